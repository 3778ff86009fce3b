DROP TABLE stranger_replies;
DROP TABLE pull_heads;
DROP TABLE comment_commands;
