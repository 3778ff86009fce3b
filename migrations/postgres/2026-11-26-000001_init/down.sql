DROP TABLE deployments;
DROP TABLE releases;
DROP TABLE instances;
