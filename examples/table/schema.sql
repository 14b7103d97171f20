-- The table examples/table/orders.yaml watches, and the NOTIFY that wakes it on each change.
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(10, 2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- updated_at must grow on every change, so an UPDATE sets it too.
CREATE OR REPLACE FUNCTION orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_changed', NEW.id::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS orders_touch ON orders;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_changed();

DROP TRIGGER IF EXISTS orders_notify ON orders;
CREATE TRIGGER orders_notify AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_notify();
