SELECT role_name FROM svv_roles WHERE role_name = :role;
