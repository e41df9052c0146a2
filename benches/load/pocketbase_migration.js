/// Bench schema and data: users carry their customer; invoices readable only by their customer's users.
migrate((app) => {
  const settings = app.settings();
  settings.logs.maxDays = 0;
  app.save(settings);

  const users = app.findCollectionByNameOrId("users");
  users.fields.add(new TextField({ name: "customer" }));
  app.save(users);

  const invoices = new Collection({
    type: "base",
    name: "invoices",
    listRule: "customer = @request.auth.customer",
    viewRule: "customer = @request.auth.customer",
    createRule: null,
    updateRule: null,
    deleteRule: null,
    fields: [
      { name: "customer", type: "text", required: true },
      { name: "invoice_number", type: "text" },
      { name: "status", type: "text" },
      { name: "amount", type: "number" },
      { name: "tax_amount", type: "number" },
      { name: "total_amount", type: "number" },
      { name: "infrastructure_costs", type: "number" },
      { name: "currency", type: "text" },
      { name: "issue_date", type: "date" },
      { name: "due_date", type: "date" },
      { name: "description", type: "text" },
      { name: "line_items", type: "json" },
      { name: "created", type: "autodate", onCreate: true, onUpdate: false },
      { name: "updated", type: "autodate", onCreate: true, onUpdate: true },
    ],
    indexes: ["CREATE INDEX idx_invoices_customer_created ON invoices (customer, created)"],
  });
  app.save(invoices);

  const first = new Record(users);
  first.set("email", "user0@bench.test");
  first.setPassword("__PASSWORD__");
  first.set("customer", "c0");
  first.setVerified(true);
  app.save(first);

  app.db().newQuery(`
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {:users} - 1)
    INSERT INTO users (id, email, emailVisibility, verified, password, tokenKey, name, avatar, customer, created, updated)
    SELECT printf('u%014d', i), printf('user%d@bench.test', i), 0, 1, (SELECT password FROM users WHERE id = {:first}),
           lower(hex(randomblob(25))), '', '', printf('c%d', i % 2),
           strftime('%Y-%m-%d %H:%M:%fZ', 'now'), strftime('%Y-%m-%d %H:%M:%fZ', 'now')
    FROM n`).bind({ users: __USERS__, first: first.id }).execute();

  app.db().newQuery(`
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {:invoices} - 1)
    INSERT INTO invoices (id, customer, invoice_number, status, amount, tax_amount, total_amount, infrastructure_costs,
                          currency, issue_date, due_date, description, line_items, created, updated)
    SELECT printf('inv%012d', i), printf('c%d', i % 2), printf('INV-2026-%06d', i + 1), 'pending', 1250, 237.5, 1487.5, 0,
           'USD', '2026-11-25 09:00:00.000Z', '2026-12-25 09:00:00.000Z',
           'Recurring charges for ' || i, '[{"description":"Monthly fee","quantity":1,"unit_price":1250,"amount":1250}]',
           strftime('%Y-%m-%d %H:%M:%fZ', '2026-01-01', printf('+%d seconds', i)),
           strftime('%Y-%m-%d %H:%M:%fZ', '2026-01-01', printf('+%d seconds', i))
    FROM n`).bind({ invoices: __INVOICES__ }).execute();
}, (app) => {});
