-- A role of Redshift's role-based access control; an administrator grants it to users (GRANT ROLE … TO user).
CREATE ROLE {role};
