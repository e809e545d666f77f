#!/usr/bin/env python3
"""Model-based test of the order lifecycle (issue 8).

A small model of products, orders, payments and the order saga, written
from the lifecycle in the work contract and issue 8, sharing no code or
tables with lib/.  A seeded generator makes histories of people's commands
(through cqrs-command), runs of the saga (cqrs-saga run, with the sample
step programs told to succeed, decline or fail once), kills of the runner
(kill -9 at a transaction boundary or at a random moment) and re-runs; after
every step the real state (cqrs-command show) is checked against the model
and the invariants, and at checkpoints the views (cqrs-project, then
cqrs-query) against the aggregates.

The tools are found on PATH, the saga and its step programs under
$CQRS_SHAREDIR.  Standard library only.

    model.py [-n HISTORIES] [-s SEED] [-j JOBS] [--steps N] [--out DIR]
    model.py --replay HISTORY-SEED [--steps N]   one history, verbose log

Exit 0 when every history held, 1 when one broke (its seed, the property,
a replay command and the file with its full history are printed), 2 on
usage or setup errors.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0)
STATUSES = ("PENDING", "CONFIRMED", "PAID", "SHIPPED", "CANCELLED")
OPEN = ("PENDING", "CONFIRMED", "PAID")


class Violation(Exception):
    """A property that did not hold: its name and what was seen."""

    def __init__(self, prop, detail):
        super().__init__("%s: %s" % (prop, detail))
        self.prop = prop
        self.detail = detail


def cents(x):
    """A money value as printed by the tools (number or string) in cents."""
    if x is None:
        return None
    return int((Decimal(str(x)) * 100).to_integral_value())


def money(c):
    """Cents as a JSON number with two decimals' meaning (12.30 -> 12.3)."""
    return c / 100


# --- the model ----------------------------------------------------------------


class Product:
    def __init__(self, pid, sku, qty):
        self.id, self.sku = pid, sku
        self.on_hand = self.received = qty
        self.shipped = 0
        self.held = {}  # order id -> units

    @property
    def reserved(self):
        return sum(self.held.values())

    @property
    def available(self):
        return self.on_hand - self.reserved

    def hold(self, oid, q):
        self.held[oid] = self.held.get(oid, 0) + q

    def release(self, oid, q=None):
        have = self.held.get(oid, 0)
        q = have if q is None else q
        if have - q == 0:
            self.held.pop(oid, None)
        else:
            self.held[oid] = have - q


class Payment:
    def __init__(self, pid, oid, amount, by):
        self.id, self.order, self.by = pid, oid, by
        self.authorized, self.captured, self.refunded = amount, 0, 0
        self.voided = False

    def cancel(self):
        """CancelPayment: void what is not captured, refund what is."""
        changed = False
        if not self.voided and self.captured < self.authorized:
            self.voided, changed = True, True
        if self.refunded < self.captured:
            self.refunded, changed = self.captured, True
        return changed


class Saga:
    def __init__(self):
        self.started = False
        self.step = 0  # next step: 0 reserve, 1 authorize, 2 label, 3 confirm
        self.own = set()  # steps that changed something of the saga's own
        self.status = None  # RUNNING, COMPLETED, FINISHED (failed/compensated)
        self.outcome = None  # the expected outcome, or None: any
        self.uncertain = False  # the contract does not say: status not checked
        self.cancel_handled = False
        self.fail_count = {}  # step program key -> calls seen in fail:1 mode
        self.payment = None  # the saga's Payment, once authorized
        self.existed_before_cancel = False


class Order:
    def __init__(self, oid, n, items, prices, customer, country):
        self.id, self.n = oid, n
        self.items = items  # [(product id, quantity)], distinct products
        self.total = sum(q * p for (_, q), p in zip(items, prices))
        self.prices = prices
        self.customer, self.country = customer, country
        self.status = "PENDING"
        self.confirmed_by = None  # 'person' or 'saga'
        self.cancelled_by = None
        self.saga = Saga()
        self.label = 0  # active labels: 0, 1, or None (either: not checked)
        self.label_ever = False
        self.person_paid = False
        self.tracking = None


class Model:
    def __init__(self):
        self.products = {}
        self.orders = {}  # id -> Order, in creation order
        self.payments = {}  # id -> Payment (people's and, once seen, the saga's)
        self.shipments_accepted = 0  # units in accepted ShipOrder commands

    def holdings(self, oid):
        return {p.id: p.held[oid] for p in self.products.values() if oid in p.held}


# --- the saga as the contract describes it ------------------------------------


def step_program(saga, key, mode, country=None):
    """What a sample step program answers: ok, decline or fail (75).  Follows
    share/steps/*: fail:N counts calls per key only in that mode; a label for
    a country no carrier serves is refused."""
    if mode.startswith("fail:"):
        n = saga.fail_count.get(key, 0) + 1
        saga.fail_count[key] = n
        mode = "fail" if n <= int(mode[5:]) else "ok"
    if mode == "ok" and country is not None and country not in ("US", "CA", "GB", "DE", "FR", "NL"):
        return "decline"
    return mode


def saga_cancel_effects(m, o):
    """A cancelled order, once the saga has handled it, holds nothing: its
    reservations are released, the saga's payment is voided or refunded, its
    label cancelled (issue 8: "a cancellation undoes exactly what is held")."""
    for p in m.products.values():
        p.release(o.id) if o.id in p.held else None
    if o.saga.payment is not None:
        o.saga.payment.cancel()
    if o.label is not None and o.label > 0:
        o.label = 0


def release_order_holds(m, o):
    """CancelOrder gives back, in its own transaction, every unit the order
    holds of the products on its lines, whoever reserved them."""
    for pid in {pid for pid, _ in o.items}:
        p = m.products[pid]
        p.release(o.id) if o.id in p.held else None


def saga_compensate(m, o):
    """The saga undoes its own completed steps, in reverse."""
    s = o.saga
    if 2 in s.own and o.label is not None:
        o.label = 0
    if 1 in s.own and s.payment is not None:
        s.payment.cancel()
    if 0 in s.own:
        for pid, _ in o.items:
            m.products[pid].release(o.id) if o.id in m.products[pid].held else None


def saga_fail(m, o):
    s = o.saga
    saga_compensate(m, o)
    s.status = "FINISHED"
    if o.confirmed_by == "person":
        s.outcome = "left_to_person"
    elif o.status == "SHIPPED":
        s.outcome = None
    else:
        o.status, o.cancelled_by = "CANCELLED", "saga"
        release_order_holds(m, o)
        saga_cancel_effects(m, o)
        s.outcome = "compensated"
        s.cancel_handled = True


def saga_steps(m, o, auth_mode, label_mode):
    """Walks one RUNNING saga as far as it goes in this run."""
    s = o.saga
    while True:
        if s.step == 0:
            if o.status == "SHIPPED":
                # the reservation's goal is past; what the saga does then is
                # not said, only that it changes nothing of the order
                s.uncertain, o.label = True, None
                return
            got = []
            for pid, q in o.items:
                p = m.products[pid]
                if p.held.get(o.id, 0) >= q:
                    continue
                if o.status not in OPEN or p.available < q:
                    for gp in got:
                        m.products[gp].release(o.id)
                    return saga_fail(m, o)
                p.hold(o.id, q)
                got.append(pid)
            if got:
                s.own.add(0)
        elif s.step == 1:
            if o.status not in ("PAID", "SHIPPED"):
                r = step_program(s, "authorize", auth_mode)
                if r == "fail":
                    return
                if r == "decline":
                    return saga_fail(m, o)
                s.payment = Payment(None, o.id, o.total, "saga")
                s.own.add(1)
        elif s.step == 2:
            if o.status == "SHIPPED":
                s.uncertain, o.label = True, None
                return
            if not o.label_ever:
                r = step_program(s, "create", label_mode, o.country)
                if r == "fail":
                    return
                if r == "decline":
                    return saga_fail(m, o)
                o.label, o.label_ever = 1, True
                s.own.add(2)
        elif s.step == 3:
            if o.status == "PENDING":
                o.status, o.confirmed_by = "CONFIRMED", "saga"
                s.own.add(3)
        else:
            s.status, s.outcome = "COMPLETED", "completed"
            return
        s.step += 1


def saga_run(m, auth_mode, label_mode):
    """One `cqrs-saga run`: every order's saga, in the order they started."""
    for o in m.orders.values():
        s = o.saga
        if not s.started:
            s.started, s.status = True, "RUNNING"
        if o.cancelled_by == "person" and not s.cancel_handled:
            # a person cancelled: the saga undoes what the order holds; an
            # instance that was RUNNING or COMPLETED then ends 'cancelled'
            saga_cancel_effects(m, o)
            s.cancel_handled = True
            s.outcome = "cancelled" if s.existed_before_cancel else None
            s.status = "FINISHED"
            continue
        if s.status != "RUNNING" or s.uncertain:
            continue
        saga_steps(m, o, auth_mode, label_mode)


# --- a history: the generator, the real tools, the checks --------------------


class History:
    def __init__(self, seed, steps, root, keep=False, verbose=False, ignore=()):
        self.seed, self.nsteps = seed, steps
        self.ignore, self.ignored = set(ignore), {}
        self.rng = random.Random(seed)
        self.m = Model()
        self.dir = tempfile.mkdtemp(prefix="h%d-" % seed, dir=root)
        self.keep, self.verbose = keep, verbose
        self.log_lines = []
        self.step_no = 0
        self.clock = 0
        self.person_payments = set()
        self.ncmd = 0
        share = os.environ.get("CQRS_SHAREDIR", "share")
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith(("PAYMENT_GATEWAY_", "SHIPPING_LABEL_", "CQRS_SAGA_")):
                del self.env[k]
        self.env.update(
            CQRS_STORE=os.path.join(self.dir, "events.db"),
            CQRS_VIEWS=os.path.join(self.dir, "views.db"),
            PAYMENT_GATEWAY_DIR=os.path.join(self.dir, "pg"),
            SHIPPING_LABEL_DIR=os.path.join(self.dir, "sl"),
            CQRS_BUSY_TIMEOUT="10000",
            LC_ALL="C",
            TZ="UTC",
            HOME=self.dir,
        )
        # the shipped saga, with its circuit breaker out of reach: which
        # call a breaker would hold back depends on the other sagas of a run
        # (the breaker has tests of its own)
        src = os.path.join(share, "sagas", "order.yaml")
        self.saga_file = os.path.join(self.dir, "order.yaml")
        with open(src) as f:
            text = f.read().replace("failures: 5", "failures: 100000")
        with open(self.saga_file, "w") as f:
            f.write(text)

    def violate(self, prop, detail):
        """A property broke: the end of the history, unless it is one the
        run was told to note and go past (--ignore)."""
        if prop not in self.ignore:
            raise Violation(prop, detail)
        self.log("!! (ignored) %s: %s" % (prop, detail))
        self.ignored.setdefault(prop, "step %s: %s" % (self.step_no, detail))

    def uid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def log(self, *parts):
        line = " ".join(str(p) for p in parts)
        self.log_lines.append(line)
        if self.verbose:
            print(line, file=sys.stderr)

    # -- running the tools

    def tool(self, args, stdin=None, env=None, expect=(0,)):
        t, c = time.time(), os.times()
        p = subprocess.run(
            args, input=stdin, capture_output=True, text=True, env=env or self.env, timeout=300
        )
        c2 = os.times()
        self.log("$", " ".join(args), "->", p.returncode, "(%.0f ms, cpu %.0f ms)" % (
            (time.time() - t) * 1000,
            (c2.children_user + c2.children_system - c.children_user - c.children_system) * 1000))
        if p.stderr:
            self.log("  stderr:", p.stderr.strip()[:2000])
        if expect is not None and p.returncode not in expect:
            self.violate(
                "tool_exit",
                "%s exited %d (expected %s): %s"
                % (" ".join(args[:3]), p.returncode, expect, p.stderr.strip()[:500]),
            )
        return p

    def commands(self, cmds):
        """Sends [(command, predicted status, predicted code or None)] through
        one cqrs-command process and checks each result line."""
        if not cmds:
            return
        lines = []
        for c, _, _ in cmds:
            self.ncmd += 1
            c = dict(command_id="h%d-c%d" % (self.seed, self.ncmd), **c)
            lines.append(json.dumps(c, separators=(",", ":")))
        for ln in lines:
            self.log("  >", ln)
        rejected = any(st == "rejected" for _, st, _ in cmds)
        p = self.tool(["cqrs-command"], stdin="\n".join(lines) + "\n", expect=(0, 4))
        out = [ln for ln in p.stdout.splitlines() if ln.strip()]
        for ln in out:
            self.log("  <", ln[:600])
        if len(out) != len(cmds):
            self.violate("tool_output", "%d commands, %d result lines" % (len(cmds), len(out)))
        for (c, st, code), ln in zip(cmds, out):
            r = json.loads(ln)
            got = r.get("status")
            if got != st:
                self.violate(
                    "command_result",
                    "%s %s: model says %s, tool says %s (%s)"
                    % (c["type"], short(c), st, got, r.get("reason", "")),
                )
            if code is not None and r.get("code") != code:
                self.violate(
                    "reject_code",
                    "%s: code %r, the contract says %r (%s)"
                    % (c["type"], r.get("code"), code, r.get("reason", "")),
                )
        if (p.returncode == 4) != rejected:
            self.violate("tool_exit", "cqrs-command exited %d" % p.returncode)

    def show(self, aid):
        p = self.tool(["cqrs-command", "show", aid])
        try:
            return json.loads(p.stdout, parse_float=Decimal)["state"]
        except ValueError as e:
            self.violate("tool_output", "cqrs-command show printed no JSON (%s): %s" % (e, p.stdout[:300]))
            # told to go past it: read what it meant, to see what else breaks
            return json.loads(p.stdout.replace("}{", "},{"), parse_float=Decimal)["state"]

    # -- the checks

    def check_product(self, p):
        st = self.show(p.id)
        missing = [k for k in ("on_hand", "reserved", "shipped", "received") if k not in st]
        if missing:
            return self.violate("inventory_fields", "show of a product lacks %s" % ",".join(missing))
        real = {k: int(st[k]) for k in ("on_hand", "reserved", "shipped", "received")}
        real["available"] = int(st.get("available", real["on_hand"] - real["reserved"]))
        if real["on_hand"] < 0 or real["reserved"] < 0 or real["available"] < 0:
            self.violate("inventory_invariant", "%s: %s" % (p.sku, real))
        if real["shipped"] > real["received"]:
            self.violate("inventory_invariant", "%s shipped > received: %s" % (p.sku, real))
        if real["available"] != real["on_hand"] - real["reserved"]:
            self.violate("inventory_invariant", "%s available != on_hand - reserved" % p.sku)
        held = holdings_of(st)
        if held is None:
            self.violate("inventory_fields", "show of a product has no per-order map")
            held = dict(p.held)
        if sum(held.values()) != real["reserved"]:
            self.violate("inventory_invariant", "%s reserved %d, per order %s" % (p.sku, real["reserved"], held))
        for oid, n in held.items():
            o = self.m.orders.get(oid)
            if n <= 0:
                self.violate("inventory_invariant", "%s: order %s holds %d" % (p.sku, oid, n))
            if o is None or (o.status not in OPEN and o.saga.cancel_handled) or o.status == "SHIPPED":
                self.violate(
                    "held_by_closed_order",
                    "%s: %d held by %s order %s" % (p.sku, n, o.status if o else "unknown", oid),
                )
        want = dict(
            on_hand=p.on_hand, reserved=p.reserved, shipped=p.shipped, received=p.received, available=p.available
        )
        if real["shipped"] != p.shipped:
            self.violate(
                "shipped_equals_shipments", "%s shipped %d, shipments accepted %d" % (p.sku, real["shipped"], p.shipped)
            )
        if real != want or held != p.held:
            self.violate("inventory_state", "%s: real %s %s, model %s %s" % (p.sku, real, held, want, p.held))

    def check_order(self, o):
        st = self.show(o.id)
        status = order_status(st)
        if o.confirmed_by == "person" and status == "CANCELLED" and o.cancelled_by != "person":
            self.violate("person_confirmed_cancelled_by_saga", "order %d (%s)" % (o.n, o.id))
        if status != o.status:
            self.violate("order_state", "order %d: real %s, model %s" % (o.n, status, o.status))

    def check_payment(self, pay):
        st = self.show(pay.id)
        real = tuple(cents(st.get(k)) for k in ("authorized", "captured", "refunded")) + (bool(st.get("voided")),)
        if real[1] > real[0] or real[2] > real[1]:
            self.violate("payment_invariant", "payment %s: %s" % (pay.id, real))
        want = (pay.authorized, pay.captured, pay.refunded, pay.voided)
        if real != want:
            self.violate(
                "payment_state", "%s payment of order %s: real %s, model %s" % (pay.by, pay.order, real, want)
            )

    def check_all(self, touched=None):
        """The products, orders and payments a step touched (all of them,
        and the saga's payments and labels, after a saga run): nothing else
        can have moved.  Stock first: it is most often the cause."""
        if touched is not None:
            for oid in list(touched):
                o = self.m.orders.get(oid)
                touched.update(p for p, _ in o.items) if o else None
        for p in self.m.products.values():
            if touched is None or p.id in touched:
                self.check_product(p)
        if touched is None:
            self.check_events()
        for o in self.m.orders.values():
            if touched is None or o.id in touched:
                self.check_order(o)
        for pay in self.m.payments.values():
            if pay.id is not None and (touched is None or pay.id in touched):
                self.check_payment(pay)

    def check_events(self):
        """The saga's payments and labels, found in the store's events."""
        p = self.tool(["cqrs-read"])
        pays, labels = {}, {}
        for ln in p.stdout.splitlines():
            e = json.loads(ln)
            t, d = e["event_type"], e.get("data") or {}
            if t == "PaymentAuthorized" and e["aggregate_id"] not in self.person_payments:
                pays.setdefault(d.get("order_id"), []).append(e["aggregate_id"])
            elif t == "ShippingLabelCreated":
                labels[d.get("order_id")] = labels.get(d.get("order_id"), 0) + 1
            elif t == "ShipmentCancelled":
                labels[d.get("order_id")] = labels.get(d.get("order_id"), 0) - 1
        for o in self.m.orders.values():
            got = pays.get(o.id, [])
            s = o.saga
            if (s.payment is not None) != (len(got) == 1) or len(got) > 1:
                self.violate(
                    "saga_payment",
                    "order %d: %d saga authorizations, model %d" % (o.n, len(got), s.payment is not None),
                )
            if s.payment is not None and s.payment.id is None and len(got) == 1:
                s.payment.id = got[0]
                self.m.payments[got[0]] = s.payment
            n = labels.get(o.id, 0)
            if o.label is None:
                continue
            if n != o.label:
                self.violate("label", "order %d: %d active labels, model %d" % (o.n, n, o.label))

    def check_sagas(self):
        try:
            db = sqlite3.connect("file:%s?mode=ro" % self.env["CQRS_STORE"], uri=True)
            rows = db.execute("SELECT correlation_id, status, outcome FROM saga_instances").fetchall()
            db.close()
        except sqlite3.Error as e:
            return self.violate("saga_table", str(e))
        real = {r[0]: (r[1], r[2]) for r in rows}
        for o in self.m.orders.values():
            s = o.saga
            if not s.started:
                continue
            got = real.get("order-%d" % o.n)
            if got is None:
                self.violate("saga_outcome", "order %d has no saga instance" % o.n)
                continue
            if s.uncertain:
                continue
            status, outcome = got
            if s.status in ("RUNNING", "COMPLETED") and status != s.status:
                self.violate("saga_outcome", "order %d: saga %s/%s, model %s" % (o.n, status, outcome, s.status))
            if s.status == "FINISHED" and status in ("RUNNING", "COMPENSATING"):
                self.violate("saga_outcome", "order %d: saga %s, model finished (%s)" % (o.n, status, s.outcome))
            if s.status != "RUNNING" and s.outcome is not None and outcome != s.outcome:
                self.violate(
                    "saga_outcome", "order %d: outcome %r, model %r (status %s)" % (o.n, outcome, s.outcome, status)
                )

    def check_views(self, full=False):
        self.tool(["cqrs-project"])
        p = self.tool(["cqrs-query", "-f", "ndjson", "inventory"])
        rows = {r["product_id"]: r for r in map(json.loads, p.stdout.splitlines())}
        for prod in self.m.products.values():
            r = rows.get(prod.id)
            if r is None:
                self.violate("view_inventory", "no inventory row for %s" % prod.sku)
                continue
            for k in ("on_hand", "reserved", "available", "shipped", "received"):
                if k not in r:
                    self.violate("view_fields", "inventory view has no %s" % k)
                    continue
                want = getattr(prod, k)
                if int(r[k]) != want:
                    self.violate("view_inventory", "%s %s: view %s, aggregate %d" % (prod.sku, k, r[k], want))
        p = self.tool(["cqrs-query", "-f", "ndjson", "orders", "-n", "100000"])
        rows = {r["order_id"]: r for r in map(json.loads, p.stdout.splitlines())}
        for o in self.m.orders.values():
            r = rows.get(o.id)
            if r is None or r.get("status") != o.status:
                self.violate(
                    "view_order", "order %d: view %s, aggregate %s" % (o.n, r and r.get("status"), o.status)
                )
        if not full:
            return
        for o in self.m.orders.values():
            p = self.tool(["cqrs-query", "-f", "ndjson", "order", o.id])
            r = json.loads(p.stdout, parse_float=Decimal)
            self.check_order_view(o, r)

    def check_order_view(self, o, r):
        for k in ("payment_id", "amount_authorized", "amount_captured", "amount_refunded", "payment_status",
                  "tracking_number", "carrier"):
            if k not in r:
                return self.violate("view_fields", "order view has no %s" % k)
        pays = [x for x in self.m.payments.values() if x.order == o.id]
        # with one Payment and no ConfirmPayment (whose amount the view may
        # count as it likes), the view's amounts are that payment's
        if len(pays) == 1 and not o.person_paid:
            x = pays[0]
            got = tuple(cents(r[k]) or 0 for k in ("amount_authorized", "amount_captured", "amount_refunded"))
            if got != (x.authorized, x.captured, x.refunded):
                self.violate(
                    "view_order_payment",
                    "order %d: view %s, aggregate %s" % (o.n, got, (x.authorized, x.captured, x.refunded)),
                )
        if (o.label_ever or o.status == "SHIPPED") and not r.get("tracking_number"):
            self.violate("view_order_shipment", "order %d: a label or shipment, no tracking number" % o.n)

    # -- people's actions: each returns [(command, predicted status, code)]

    def act_create(self):
        m = self.m
        n = len(m.orders) + 1
        pids = self.rng.sample(list(m.products), self.rng.choice((1, 1, 2)))
        items = [(pid, self.rng.randint(1, 3)) for pid in pids]
        prices = [self.rng.randint(5, 30) * 100 + self.rng.choice((0, 99, 50)) for _ in items]
        country = self.rng.choice(("US",) * 5 + ("JP",))
        o = Order(self.uid(), n, items, prices, "cust-%d" % n, country)
        m.orders[o.id] = o
        c = dict(
            type="CreateOrder",
            correlation_id="order-%d" % n,
            order_id=o.id,
            customer_id=o.customer,
            items=[dict(product_id=p, quantity=q, unit_price=money(pr)) for (p, q), pr in zip(items, prices)],
            currency="USD",
            shipping_address=dict(
                name="Customer %d" % n, street="%d Main St" % n, city="Springfield", postal_code="12345",
                country=country,
            ),
        )
        self.log("# create order", n, items, "total", o.total, country)
        return [(c, "accepted", None)]

    def some_order(self, *states):
        os_ = [o for o in self.m.orders.values() if not states or o.status in states]
        return self.rng.choice(os_) if os_ else None

    def act_confirm(self):
        o = self.some_order()
        if o is None:
            return []
        c = dict(type="ConfirmOrder", order_id=o.id, correlation_id="person")
        if o.status == "PAID":
            return []  # not said by the contract
        if o.status == "PENDING":
            o.status, o.confirmed_by = "CONFIRMED", "person"
            return [(c, "accepted", None)]
        if o.status == "CONFIRMED" and self.rng.random() < 0.5:
            c["if_needed"] = True
            return [(c, "unchanged", None)]
        return [(c, "rejected", None)]

    def act_pay(self):
        o = self.some_order()
        if o is None:
            return []
        c = dict(type="ConfirmPayment", order_id=o.id, payment_id=self.uid(), amount=money(o.total),
                 currency="USD", correlation_id="person")
        if o.status in ("PENDING", "CONFIRMED"):
            o.status, o.person_paid = "PAID", True
            return [(c, "accepted", None)]
        return [(c, "rejected", None)]

    def act_ship(self):
        o = self.some_order("PAID") if self.rng.random() < 0.7 else self.some_order()
        if o is None:
            return []
        c = dict(type="ShipOrder", order_id=o.id, carrier="UPS", tracking_number="T%d" % o.n,
                 correlation_id="person")
        ok = o.status == "PAID" and all(self.m.products[p].held.get(o.id, 0) >= q for p, q in o.items)
        if not ok:
            return [(c, "rejected", None)]
        for p, q in o.items:
            prod = self.m.products[p]
            prod.release(o.id, q)
            prod.on_hand -= q
            prod.shipped += q
            self.m.shipments_accepted += q
        o.status = "SHIPPED"
        return [(c, "accepted", None)]

    def act_cancel(self):
        o = self.some_order()
        if o is None:
            return []
        if self.rng.random() < 0.25 and o.confirmed_by == "person" and o.status in OPEN:
            # automation may not undo a person's decision
            c = dict(type="CancelOrder", order_id=o.id, reason="automation", automated=True, if_needed=True,
                     correlation_id="robot")
            return [(c, "rejected", "person_decision")]
        c = dict(type="CancelOrder", order_id=o.id, reason="customer asked", correlation_id="person")
        if o.status in OPEN:
            o.status, o.cancelled_by = "CANCELLED", "person"
            release_order_holds(self.m, o)
            s = o.saga
            s.existed_before_cancel = s.started and s.status in ("RUNNING", "COMPLETED") and not s.uncertain
            return [(c, "accepted", None)]
        if o.status == "CANCELLED" and self.rng.random() < 0.3:
            c["if_needed"] = True
            return [(c, "unchanged", None)]
        return [(c, "rejected", None)]

    def act_reserve(self):
        m, r = self.m, self.rng
        if r.random() < 0.1:
            p = r.choice(list(m.products.values()))
            c = dict(type="ReserveInventory", product_id=p.id, order_id=self.uid(), quantity=1,
                     correlation_id="person")
            return [(c, "rejected", None)]
        o = self.some_order()
        if o is None:
            return []

        def cmd(p, q):
            return dict(type="ReserveInventory", product_id=p, order_id=o.id, quantity=q, correlation_id="person")

        held = m.holdings(o.id)
        if o.status not in OPEN:
            if held:
                return []  # a closed order still waiting for the saga's undo
            p, q = o.items[0]
            return [(cmd(p, q), "rejected", None)]
        if held and all(held.get(p, 0) >= q for p, q in o.items):
            p, q = r.choice(o.items)
            c = cmd(p, q)
            c["if_needed"] = True
            return [(c, "unchanged", None)]
        if held:
            return []
        short_ = [(p, q) for p, q in o.items if m.products[p].available < q]
        if short_:
            p, q = short_[0]
            return [(cmd(p, q), "rejected", "insufficient_stock")]
        out = []
        for p, q in o.items:
            m.products[p].hold(o.id, q)
            out.append((cmd(p, q), "accepted", None))
        return out

    def act_release(self):
        m, r = self.m, self.rng
        o = self.some_order()
        if o is None:
            return []
        out = []
        for p, q in o.items:
            c = dict(type="ReleaseInventory", product_id=p, order_id=o.id, correlation_id="person")
            have = m.products[p].held.get(o.id, 0)
            if have == 0:
                if r.random() < 0.5:
                    c["if_needed"] = True
                    out.append((c, "unchanged", None))
                else:
                    c["quantity"] = q
                    out.append((c, "rejected", "nothing_held"))
                continue
            x = r.random()
            if x < 0.2:
                c["quantity"] = have + 1
                out.append((c, "rejected", None))
                continue
            if x < 0.6:
                c["quantity"] = have
            m.products[p].release(o.id)
            out.append((c, "accepted", None))
        return out

    def act_replenish(self):
        p = self.rng.choice(list(self.m.products.values()))
        q = self.rng.randint(1, 4)
        p.on_hand += q
        p.received += q
        return [(dict(type="ReplenishStock", product_id=p.id, quantity=q), "accepted", None)]

    def act_payment(self):
        """A person's payment commands: authorize, capture, refund, void,
        cancel, on payments of their own or the saga's."""
        m, r = self.m, self.rng
        pays = list(m.payments.values())
        x = r.random()
        if x < 0.25 or not pays:
            o = self.some_order(*OPEN)
            if o is None:
                return []
            pid = self.uid()
            amount = r.randint(1, o.total)
            c = dict(type="AuthorizePayment", payment_id=pid, order_id=o.id, amount=money(amount), currency="USD",
                     correlation_id="person")
            if r.random() < 0.1:
                c["amount"] = r.choice((0, 0.0, -0.0))
                return [(c, "rejected", None)]
            self.person_payments.add(pid)
            m.payments[pid] = Payment(pid, o.id, amount, "person")
            return [(c, "accepted", None)]
        pay = r.choice(pays)
        base = dict(payment_id=pay.id, correlation_id="person")
        left = pay.authorized - pay.captured
        if x < 0.5:
            c = dict(base, type="CapturePayment")
            if pay.voided or left == 0:
                return [(c, "rejected", None)]
            y = r.random()
            if y < 0.2:
                c["amount"] = money(left + 1)
                return [(c, "rejected", None)]
            amount = left if y < 0.6 else r.randint(1, left)
            if y >= 0.4:
                c["amount"] = money(amount)
            pay.captured += amount
            return [(c, "accepted", None)]
        if x < 0.7:
            c = dict(base, type="RefundPayment")
            room = pay.captured - pay.refunded
            if room == 0 or r.random() < 0.2:
                c["amount"] = money(room + 1)
                return [(c, "rejected", None)]
            amount = r.randint(1, room)
            c["amount"] = money(amount)
            pay.refunded += amount
            return [(c, "accepted", None)]
        if x < 0.85:
            c = dict(base, type="VoidAuthorization")
            if pay.voided:
                if r.random() < 0.5:
                    c["if_needed"] = True
                    return [(c, "unchanged", None)]
                return [(c, "rejected", None)]
            if left == 0:
                return [(c, "rejected", None)]
            pay.voided = True
            return [(c, "accepted", None)]
        c = dict(base, type="CancelPayment", reason="person")
        if pay.cancel():
            return [(c, "accepted", None)]
        if r.random() < 0.5:
            c["if_needed"] = True
            return [(c, "unchanged", None)]
        return [(c, "rejected", None)]

    # -- the saga runner

    def saga_run(self, final=False):
        r = self.rng
        modes = ("ok", "ok", "ok", "decline", "fail:1", "fail:1")
        auth, label = ("ok", "ok") if final else (r.choice(modes), r.choice(modes))
        kill = None
        if not final and "fail:1" not in (auth, label):
            x = r.random()
            # a kill between two commits, or at any moment; the re-run must
            # end where one whole run would (fail:1 is left out: a call that
            # failed before the kill may be repeated and then succeed)
            kill = "boundary" if x < 0.25 else "signal" if x < 0.35 else None
        self.clock += 1
        env = dict(
            self.env,
            PAYMENT_GATEWAY_AUTHORIZE_MODE=auth,
            SHIPPING_LABEL_CREATE_MODE=label,
            CQRS_SAGA_NOW=(T0 + datetime.timedelta(hours=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.log("# saga run: authorize %s, label %s, kill %s" % (auth, label, kill))
        saga_run(self.m, auth, label)
        args = ["cqrs-saga", "run", "-f", self.saga_file]
        if kill == "boundary":
            n = r.randint(1, 40)
            self.log("# CQRS_SAGA_CRASH_AT=%d" % n)
            self.tool(args, env=dict(env, CQRS_SAGA_CRASH_AT=str(n)), expect=(0, 137, -9))
        elif kill == "signal":
            delay = r.uniform(0, 0.25)
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.log("# kill -9 after %.3fs: %s" % (delay, proc.returncode))
        self.tool(args, env=env)

    # -- the history

    def setup(self):
        cmds = []
        for i in range(3):
            pid = self.uid()
            q = self.rng.randint(2, 8)
            self.m.products[pid] = Product(pid, "SKU-%d" % i, q)
            cmds.append((dict(type="RegisterProduct", product_id=pid, sku="SKU-%d" % i, name="P%d" % i, quantity=q),
                         "accepted", None))
        self.commands(cmds)
        self.commands(self.act_create())

    ACTIONS = (
        ("create", 7), ("confirm", 8), ("pay", 8), ("ship", 8), ("cancel", 6), ("reserve", 9),
        ("release", 5), ("replenish", 4), ("payment", 8), ("saga", 12),
    )

    def step(self):
        names = [a for a, _ in self.ACTIONS]
        weights = [w for _, w in self.ACTIONS]
        a = self.rng.choices(names, weights)[0]
        self.log("## step %d: %s" % (self.step_no, a))
        if a == "saga":
            self.saga_run()
            self.check_all()
            self.check_sagas()
            return
        cmds = getattr(self, "act_" + a)()
        # a few people's commands go through one process
        for _ in range(self.rng.choice((0, 0, 1, 2))):
            b = self.rng.choices(names[:-1], weights[:-1])[0]
            cmds += getattr(self, "act_" + b)()
        self.commands(cmds)
        touched = set()
        for c, _, _ in cmds:
            touched.update(v for k, v in c.items() if k in ("order_id", "payment_id", "product_id"))
        self.check_all(touched)

    def run(self):
        """Runs the history; returns None, or the Violation that ended it."""
        try:
            self.setup()
            self.check_all()
            for self.step_no in range(1, self.nsteps + 1):
                self.step()
                if self.step_no % 6 == 0:
                    self.log("## checkpoint: the views")
                    self.check_views()
            self.step_no = "final"
            self.log("## final: a saga run with every service up, then the views")
            self.saga_run(final=True)
            self.check_all()
            self.check_sagas()
            self.check_views(full=True)
            return None
        except Violation as v:
            self.log("!! %s" % v)
            return v
        except Exception as e:  # a bug in the test itself, or garbage output
            self.log("!! test error: %r" % e)
            return Violation("test_error", repr(e))
        finally:
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def short(c):
    return {k: v for k, v in c.items() if k not in ("type", "correlation_id", "shipping_address")}


def holdings_of(st):
    """The per-order holdings of an Inventory state, whatever the domain
    calls them: an object of order id -> units, or an array of objects
    with an order_id and a quantity."""
    for k, v in sorted(st.items(), key=lambda kv: not any(w in kv[0] for w in ("order", "held", "reserv", "hold"))):
        if isinstance(v, dict):
            return {o: int(n) for o, n in v.items()}
        if isinstance(v, list) and all(isinstance(x, dict) and "order_id" in x for x in v):
            out = {}
            for x in v:
                n = next((x[f] for f in ("quantity", "units", "held", "reserved") if f in x), None)
                out[x["order_id"]] = out.get(x["order_id"], 0) + int(n or 0)
            return out
    return None


def order_status(st):
    for k in ("status", "state"):
        if isinstance(st.get(k), str) and st[k].upper() in STATUSES:
            return st[k].upper()
    if st.get("cancelled"):
        return "CANCELLED"
    if st.get("shipped"):
        return "SHIPPED"
    if st.get("paid"):
        return "PAID"
    if st.get("confirmed"):
        return "CONFIRMED"
    return "PENDING"


# --- many histories ---------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="model-based test of the order lifecycle")
    ap.add_argument("-n", "--histories", type=int, default=int(os.environ.get("MODEL_HISTORIES", "300")))
    ap.add_argument("-s", "--seed", type=int, default=None)
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("MODEL_JOBS", "2")))
    ap.add_argument("--steps", type=int, default=int(os.environ.get("MODEL_STEPS", "12")))
    ap.add_argument("--out", default=os.environ.get("MODEL_OUT", "."), help="where failing histories are written")
    ap.add_argument("--replay", type=int, default=None, metavar="HISTORY-SEED")
    ap.add_argument("--keep", action="store_true", help="keep each history's store")
    ap.add_argument("--replay-hint", default=os.environ.get("MODEL_REPLAY_HINT"),
                    help="how to replay, with %%(seed)d and %%(steps)d (default: this script)")
    ap.add_argument("--max-failures", type=int, default=20)
    ap.add_argument("--ignore", default=os.environ.get("MODEL_IGNORE", ""),
                    help="properties to note and go past (comma-separated), to see what breaks beyond them")
    a = ap.parse_args()
    a.ignore = [x for x in a.ignore.split(",") if x]
    for t in ("cqrs-command", "cqrs-saga", "cqrs-project", "cqrs-query", "cqrs-read", "jq"):
        if shutil.which(t) is None:
            print("model: %s is not on PATH" % t, file=sys.stderr)
            return 2
    if not os.path.isfile(os.path.join(os.environ.get("CQRS_SHAREDIR", "share"), "sagas", "order.yaml")):
        print("model: no sagas/order.yaml under CQRS_SHAREDIR", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="cqrs-model-")
    try:
        if a.replay is not None:
            h = History(a.replay, a.steps, root, keep=a.keep, verbose=True, ignore=a.ignore)
            v = h.run()
            print("history %d: %s" % (a.replay, v or "held"))
            return 1 if v else 0
        return run_many(a, root)
    finally:
        if a.keep:
            print("model: the histories' files are kept in %s" % root, file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_many(a, root):
    seed = a.seed if a.seed is not None else int(os.environ.get("MODEL_SEED") or time.time_ns() % 1000000007)
    seeds = [seed * 100003 + i for i in range(a.histories)]
    tty = sys.stderr.isatty()
    lock = threading.Lock()
    done, failures, stop, noted = [0], [], threading.Event(), {}
    t0 = time.time()
    print("model: seed %d, %d histories of %d steps, %d at a time" % (seed, a.histories, a.steps, a.jobs))

    def one(s):
        if stop.is_set():
            return
        h = History(s, a.steps, root, ignore=a.ignore)
        v = h.run()
        with lock:
            done[0] += 1
            for prop, detail in h.ignored.items():
                noted.setdefault(prop, []).append((s, detail))
            if v is not None:
                path = os.path.join(a.out, "model-failure-%d.log" % s)
                with open(path, "w") as f:
                    f.write("seed %d (run seed %d), step %s: %s\n" % (s, seed, h.step_no, v))
                    f.write("\n".join(h.log_lines) + "\n")
                failures.append((s, h.step_no, v, path))
                if len(failures) >= a.max_failures:
                    stop.set()
            if tty:
                el = time.time() - t0
                sys.stderr.write(
                    "\rmodel: %d/%d histories, %d failed, %.1f/s " % (done[0], a.histories, len(failures), done[0] / el)
                )

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        list(ex.map(one, seeds))
    if tty:
        sys.stderr.write("\n")
    el = time.time() - t0
    tm = os.times()
    cpu = tm.children_user + tm.children_system
    print("model: %d histories in %.1fs (%.2f/s; tools' CPU %.2fs a history), %d failed"
          % (done[0], el, done[0] / el, cpu / max(1, done[0]), len(failures)))
    for prop, fs in sorted(noted.items()):
        print("noted (ignored) %s: %d histories, e.g. seed %d, %s" % (prop, len(fs), fs[0][0], fs[0][1]))
    byprop = {}
    for s, step, v, path in failures:
        byprop.setdefault(v.prop, []).append((s, step, v, path))
    for prop, fs in sorted(byprop.items()):
        print("FAILED %s: %d histories" % (prop, len(fs)))
        for s, step, v, path in fs[:3]:
            print("  seed %d, step %s: %s" % (s, step, v.detail))
            # the first K steps of a history are the same whatever its length:
            # a failure at step K replays in a history of K steps
            k = step if isinstance(step, int) and step > 0 else a.steps
            hint = a.replay_hint or (os.path.abspath(sys.argv[0]) + " --replay %(seed)d --steps %(steps)d")
            print("    replay: %s   (history: %s)" % (hint % dict(seed=s, steps=k), path))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
