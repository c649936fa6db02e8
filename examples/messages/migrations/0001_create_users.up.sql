-- description: the tenant's users, by email
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email varchar(320) NOT NULL UNIQUE,
    name varchar(200),
    created_at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP
);
