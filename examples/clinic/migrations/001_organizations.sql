-- Health care organizations (US set only).
CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    address     text,
    city        text,
    state       text,
    zip         text,
    lat         numeric,
    lon         numeric,
    phone       text,
    revenue     numeric,
    utilization numeric
);
