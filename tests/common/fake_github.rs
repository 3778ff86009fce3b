//! The tests' GitHub stand-in is the product's (`deploybot::sandbox`, also behind
//! `deploybot sandbox`), with a key pair for GitHub App tests.
#![allow(dead_code, unused_imports)]

pub use deploybot::sandbox::*;

/// A 2048-bit RSA key pair for GitHub App tests (PKCS#1, the format GitHub hands out).
/// Test-only: it guards nothing.
pub const TEST_APP_PRIVATE_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEAtHfQJW/8S0hRgJnawckfcwZ25H2KRwW9SO/wIZdrdewdWehy\n\
wxP1CR734iSDpPiWLQqGQ337ono8BQP+mu9FQJXW+kYZMozR53mJ4bHlirRI8IKf\n\
RKU9xAAoX/kYc51k6FkBtWmCf11PlE+aPTJuFlLJGqhZPY8JfXl3fcpARQibUM+c\n\
oa59+wZvzZ/23jppsBSVC+G49nT6rP/FpR24/iEXt6X7knLf1HnasSFOrWuVaHXR\n\
WsmDZTxgro/tN0qW/UOpRUXeAWK3O+5QyWysBmDb1uqKBoeYTQM9ExFfvdkqwQrn\n\
uTSFzPgc9xScTXGpPHl8own2Is+eYYaILj88owIDAQABAoIBAEEsk+sxSjgV4flD\n\
lxEtBUKRLxbNj8aeeAGDRYGcIZ7wqpjxraBt8Kxelr8A2NoXPIT/rAVr1hiTdGGL\n\
U8O4bZYphv3Tmv36hUPHTNhJWtCA02aohcRQuMG0HOCsIPx/9xVCL6/Ibux4UmkJ\n\
ZnZ7Y+6D70TFT5U/tvmtiE3RYOyM1ypVZvUvDa4tAKC9vu96U5pvspJE+73Z8HOW\n\
07V2jebYr9wVNgt6O1gm3jC+WPtj8F2opiWp4I9L0G3l7o2gKP47V0/GPFoa2Q78\n\
IddFJghqDziKL9odUzp1QXCwWwfPTtDXmSDYaP1Cma38kh+UX5jlFCo6hyLLYq91\n\
lJK5IYECgYEA7SWiIVauv2v6lNkkT6DwZAJT1JrKycxtiJBp/OVMUKSNjEVOe7n9\n\
JVdevC6IEZVvzBlCq+QuuVfO/uc+ihDvrXcA6s4EWoXvvaax0MwEA2O9SlL84Eqz\n\
HEkJBxGdJI87iioo8Mc2M2pOIzi0fY0RacoGt+ZqdoyQH4sZtmybhFMCgYEAwtCp\n\
Kaq5Gsls3mW5vgbkJIS+wCkwDK8CDlNd2ZOIgz7lofq+yymqZRnJ14QmexLpW6h8\n\
9XUL/XtnPcNxGIWupS7RdYfEN2AHFKWqCdbTxOnwXjfPSWEA8k4KyFnINj+B0pow\n\
H5wYbyOAUpqdNZgGnH8pNM0T9BXwhUDawXxEXHECgYAxDXu/0aJLzhYC+/da0Tto\n\
NGMKswoHO9XcTaLewL9MXv04ao2VYh9OvgfGfQmAOZzqZr83tvdDNzqF12dEP8ST\n\
6O2zo/Gal+HDJNvbCJg760GYQho0er8ZtrG7WJVcnpP+PEJDq7E2aWLIPk53OdrE\n\
OxmwqGSVKPYW0Dr9VPHGKQKBgQCIHkFEErxZIgoGbm9Uff4kIfghzeV7x0AZgFhf\n\
sLy+b1EFV2y+CTO8hkNIaVZ1weX5HAWLf6fMCdA+EHPSHX3EfqztgNoxks//tizT\n\
yR2YRZikTDxyWevOYYcZK9o/RSpRW1hqjado6BY+ITfc/YcJC7Rf5zac4kN257Sx\n\
YkFlkQKBgDq0xKdd5F1Aj+9azy0PzMt1kOhBZXuW/t9WvWl6TXU6BWPnLFP8MiAE\n\
HMCgFDLXQ15MFj+BOJQKteDPYqLRKLNjHgEUp1quMvzKKZvDeiJvyUQDsdg5Gsdx\n\
DDdys9lqJELs+PRVurR1ok7Hc09KO4iPDnFXBxlGMXWUTqI1TDJg\n\
-----END RSA PRIVATE KEY-----\n\
";

/// The public half of [`TEST_APP_PRIVATE_KEY`], for [`FakeGithub::set_app`].
pub const TEST_APP_PUBLIC_KEY: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtHfQJW/8S0hRgJnawckf\n\
cwZ25H2KRwW9SO/wIZdrdewdWehywxP1CR734iSDpPiWLQqGQ337ono8BQP+mu9F\n\
QJXW+kYZMozR53mJ4bHlirRI8IKfRKU9xAAoX/kYc51k6FkBtWmCf11PlE+aPTJu\n\
FlLJGqhZPY8JfXl3fcpARQibUM+coa59+wZvzZ/23jppsBSVC+G49nT6rP/FpR24\n\
/iEXt6X7knLf1HnasSFOrWuVaHXRWsmDZTxgro/tN0qW/UOpRUXeAWK3O+5QyWys\n\
BmDb1uqKBoeYTQM9ExFfvdkqwQrnuTSFzPgc9xScTXGpPHl8own2Is+eYYaILj88\n\
owIDAQAB\n\
-----END PUBLIC KEY-----\n\
";
