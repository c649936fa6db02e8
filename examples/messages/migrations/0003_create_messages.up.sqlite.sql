CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    body text NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX messages_project_id_created_at_idx ON messages (project_id, created_at);
