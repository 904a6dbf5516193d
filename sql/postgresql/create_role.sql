-- A group role: `make up` (or an administrator) gives it LOGIN and a password, or grants it to users.
CREATE ROLE {role} NOLOGIN;
