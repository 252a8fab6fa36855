-- The data sets the demo's loader has inserted, so that a second run
-- inserts nothing (the application's own bookkeeping; not classified).
CREATE TABLE data_loads (
    data_set  text PRIMARY KEY,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
