"""Drives a running portal through the Python client openapi-python-client generated from its document.

Usage: generated_client.py DOCUMENT CLIENT_DIR   (with PORTAL_URL, PORTAL_EMAIL, PORTAL_PASSWORD set)

Checks that the client has a function for every operation of the document, then runs a billing cycle
through it as a client author would: sign in, list and create customers, read a customer and write it
back with one field changed, a proposal with milestones, acceptance, its invoices (summing to the
proposal's total to the cent), an invoice read, paid by hand, and the customer's overview.
"""

import importlib
import json
import os
import pathlib
import re
import sys

document_path, client_dir = sys.argv[1], pathlib.Path(sys.argv[2])
sys.path.insert(0, str(client_dir))

from portal_client import AuthenticatedClient, Client  # noqa: E402
from portal_client.models import (  # noqa: E402
    BillingMilestone,
    CreateCustomerRequest,
    CreateProposalRequest,
    ErrorEnvelope,
    GenerateFromProposalRequest,
    InvoiceStatus,
    LoginRequest,
    ManualPaymentMethod,
    MarkPaidRequest,
    NewAddress,
    TokenResponse,
    UpdateCustomerRequest,
)


def operations_in_document():
    document = json.loads(pathlib.Path(document_path).read_text())
    methods = {"get", "put", "post", "delete", "patch"}
    return {(m, path) for path, item in document["paths"].items() for m in item if m in methods}


def operations_in_client():
    found = set()
    for module in (client_dir / "portal_client" / "api").rglob("*.py"):
        text = module.read_text()
        method = re.search(r'"method": "(\w+)"', text)
        url = re.search(r'"url": [f]?"([^"]+)"', text)
        if method and url:
            found.add((method.group(1), url.group(1)))
    return found


def api(name):
    return importlib.import_module(f"portal_client.api.{name}")


def ok(result, what):
    """A successful answer of the operation, or the error envelope explained."""
    if result is None or isinstance(result, ErrorEnvelope):
        detail = result.to_dict() if isinstance(result, ErrorEnvelope) else "no parsed answer"
        sys.exit(f"{what} failed: {detail}")
    return result


def cents(amount):
    return round(amount * 100)


missing = operations_in_document() - operations_in_client()
if missing:
    sys.exit(f"operations missing from the generated client: {sorted(missing)}")
print(f"generated client: all {len(operations_in_document())} operations present")

base = os.environ["PORTAL_URL"]
login = api("authentication.post_auth_login").sync(
    client=Client(base_url=base),
    body=LoginRequest(email=os.environ["PORTAL_EMAIL"], password=os.environ["PORTAL_PASSWORD"]),
)
tokens = ok(login, "sign-in")
assert isinstance(tokens, TokenResponse), tokens
client = AuthenticatedClient(base_url=base, token=tokens.access_token)

before = ok(api("customers.get_customers").sync(client=client), "list customers")
customer = ok(
    api("customers.post_customers").sync(
        client=client,
        body=CreateCustomerRequest(
            name="Ada Lovelace",
            company_name="Generated Client GmbH",
            billing_email="ap@generated.example",
            address=NewAddress(street="1 Main St", city="Berlin", country="DE"),
        ),
        idempotency_key="generated-client-customer",
    ),
    "create customer",
)
after = ok(api("customers.get_customers").sync(client=client), "list customers")
assert len(after) == len(before) + 1 and any(c.id == customer.id for c in after), after

# Read-modify-write: the customer as read, one field changed, sent back whole.
read = ok(api("customers.get_customers_customer_id").sync(customer.id, client=client), "get customer")
edited = read.to_dict()
edited["company_name"] = "Generated Client AG"
written = ok(
    api("customers.put_customers_customer_id").sync(
        customer.id, client=client, body=UpdateCustomerRequest.from_dict(edited)
    ),
    "write the customer back",
)
assert written.company_name == "Generated Client AG" and written.created_at == read.created_at, written

proposal = ok(
    api("proposals.post_proposals").sync(
        client=client,
        body=CreateProposalRequest(
            customer_id=customer.id,
            title="Website rebuild",
            total_amount=1000.01,
            billing_schedule=[
                BillingMilestone(percentage=33.3333, milestone="Design"),
                BillingMilestone(percentage=33.3333, milestone="Build"),
                BillingMilestone(percentage=33.3334, milestone="Launch"),
            ],
        ),
    ),
    "create proposal",
)
ok(api("proposals.post_proposals_proposal_id_accept").sync(proposal.id, client=client), "accept proposal")
invoices = ok(
    api("billing.post_billing_generate_from_proposal").sync(
        client=client, body=GenerateFromProposalRequest(proposal_id=proposal.id)
    ),
    "invoice the proposal",
)
assert len(invoices) == 3, invoices
assert sum(cents(i.total_amount) for i in invoices) == 100_001, [i.total_amount for i in invoices]

first = ok(api("billing.get_billing_invoices_invoice_id").sync(invoices[0].id, client=client), "read invoice")
assert first.status == InvoiceStatus.PENDING and first.customer_id == customer.id, first
paid = ok(
    api("billing.post_billing_invoices_invoice_id_mark_paid").sync(
        first.id, client=client, body=MarkPaidRequest(payment_method=ManualPaymentMethod.BANK_TRANSFER)
    ),
    "mark the invoice paid",
)
assert paid.status == InvoiceStatus.PAID, paid
overview = ok(
    api("billing.get_billing_customer_customer_id_overview").sync(customer.id, client=client), "overview"
)
assert cents(overview.paid_to_date) == cents(first.total_amount), overview
assert cents(overview.outstanding_amount) == 100_001 - cents(first.total_amount), overview
print(f"generated client: billing cycle done ({len(invoices)} invoices, {paid.invoice_number} paid)")
