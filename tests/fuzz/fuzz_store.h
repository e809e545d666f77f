/*
 * A store for the targets that need one: a file in the process's fuzz
 * directory, made once and seeded with a few aggregates (two products, an
 * order reserved and paid, an order with an authorized payment), so that
 * fuzzed commands meet existing state as well as none.  Fuzzed commands
 * then run through a dry-run commander: nothing they decide is kept, and
 * every input meets the same store.
 */
#ifndef CQRS_FUZZ_STORE_H
#define CQRS_FUZZ_STORE_H

#include "cqrs.h"
#include "fuzz.h"

#define FUZZ_P1	  "11111111-1111-4111-8111-111111111111"
#define FUZZ_P2	  "12121212-1212-4212-8212-121212121212"
#define FUZZ_O1	  "22222222-2222-4222-8222-222222222222"
#define FUZZ_O2	  "23232323-2323-4323-8323-232323232323"
#define FUZZ_PAY  "33333333-3333-4333-8333-333333333333"
#define FUZZ_PAY2 "34343434-3434-4434-8434-343434343434"
#define FUZZ_ADDR                                                                                  \
	"{\"name\":\"Ann Smith\",\"street\":\"1 Main St\",\"city\":\"Springfield\","               \
	"\"postal_code\":\"12345\",\"country\":\"US\"}"

static const char *const fuzz_seed_commands[] = {
	"{\"command_id\":\"seed-1\",\"type\":\"RegisterProduct\",\"product_id\":\"" FUZZ_P1
	"\",\"sku\":\"SKU-1\",\"name\":\"Widget\",\"quantity\":10}",
	"{\"command_id\":\"seed-2\",\"type\":\"RegisterProduct\",\"product_id\":\"" FUZZ_P2
	"\",\"sku\":\"SKU-2\",\"name\":\"Gadget\",\"quantity\":5}",
	"{\"command_id\":\"seed-3\",\"type\":\"CreateOrder\",\"order_id\":\"" FUZZ_O1
	"\",\"customer_id\":\"cust-42\",\"items\":[{\"product_id\":\"" FUZZ_P1
	"\",\"quantity\":2,\"unit_price\":29.99,\"sku\":\"SKU-1\"}],\"currency\":\"USD\","
	"\"shipping_address\":" FUZZ_ADDR "}",
	"{\"command_id\":\"seed-4\",\"type\":\"ReserveInventory\",\"product_id\":\"" FUZZ_P1
	"\",\"order_id\":\"" FUZZ_O1 "\",\"quantity\":2}",
	"{\"command_id\":\"seed-5\",\"type\":\"ConfirmPayment\",\"order_id\":\"" FUZZ_O1
	"\",\"payment_id\":\"" FUZZ_PAY "\",\"amount\":59.98}",
	"{\"command_id\":\"seed-6\",\"type\":\"CreateOrder\",\"order_id\":\"" FUZZ_O2
	"\",\"customer_id\":\"cust-42\",\"items\":[{\"product_id\":\"" FUZZ_P2
	"\",\"quantity\":1,\"unit_price\":5.00}],\"currency\":\"EUR\","
	"\"shipping_address\":" FUZZ_ADDR "}",
	"{\"command_id\":\"seed-7\",\"type\":\"AuthorizePayment\",\"order_id\":\"" FUZZ_O2
	"\",\"payment_id\":\"" FUZZ_PAY2 "\",\"amount\":5,\"currency\":\"EUR\"}",
};

static cqrs_store *fuzz_store_handle;

static inline void fuzz_store_close(void)
{
	cqrs_store_close(fuzz_store_handle);
	fuzz_store_handle = NULL;
}

/* The seeded store, opened for writing; its path in fuzz_dir() is
 * events.db. */
static inline cqrs_store *fuzz_store(void)
{
	if (fuzz_store_handle != NULL)
		return fuzz_store_handle;
	char path[4200];
	cqrs_error err = { 0 };
	cqrs_store *st =
		cqrs_store_open(fuzz_path("events.db", path, sizeof path), CQRS_OPEN_WRITE, &err);
	FUZZ_ASSERT(st != NULL, "cannot open the store: %s", err.msg);
	cqrs_store_set_durability(st, CQRS_DURABLE_NORMAL);
	cqrs_commander *cmd = cqrs_commander_new(st, NULL, &err);
	FUZZ_ASSERT(cmd != NULL, "commander: %s", err.msg);
	for (size_t i = 0; i < sizeof fuzz_seed_commands / sizeof *fuzz_seed_commands; i++) {
		char line[1024];
		size_t len = strlen(fuzz_seed_commands[i]);
		memcpy(line, fuzz_seed_commands[i], len + 1);
		cqrs_command_result res = { 0 };
		FUZZ_ASSERT(cqrs_commander_handle(cmd, line, len, &res, &err) == 0 &&
				    res.status == CQRS_COMMAND_ACCEPTED,
			    "seed command %zu not accepted: %s %s", i, err.msg,
			    res.line ? res.line : "");
		cqrs_command_result_free(&res);
	}
	cqrs_commander_free(cmd);
	fuzz_store_handle = st;
	atexit(fuzz_store_close);
	return st;
}

/* A dry-run commander on the seeded store, made once. */
static cqrs_commander *fuzz_commander_handle;

static inline void fuzz_commander_free(void)
{
	cqrs_commander_free(fuzz_commander_handle);
	fuzz_commander_handle = NULL;
}

static inline cqrs_commander *fuzz_commander(void)
{
	if (fuzz_commander_handle != NULL)
		return fuzz_commander_handle;
	cqrs_store *st = fuzz_store();
	struct cqrs_command_options opt = { .snapshot_every = 2,
					    .user_id = "fuzz",
					    .dry_run = true };
	cqrs_error err = { 0 };
	fuzz_commander_handle = cqrs_commander_new(st, &opt, &err);
	FUZZ_ASSERT(fuzz_commander_handle != NULL, "commander: %s", err.msg);
	atexit(fuzz_commander_free); /* runs before fuzz_store_close */
	return fuzz_commander_handle;
}

/* One command line through the dry-run commander and its goal check: what
 * cqrs-command and the saga do with it.  Returns 0 when it was a command
 * (accepted, rejected or unchanged), -1 when refused as bad input. */
static inline int fuzz_command_line(const char *text, size_t len)
{
	cqrs_commander *cmd = fuzz_commander();
	char *line = malloc(len + 1);
	FUZZ_ASSERT(line != NULL, "malloc");
	memcpy(line, text, len);
	line[len] = '\0';
	cqrs_command_result res = { 0 };
	cqrs_error err = { 0 };
	int r = cqrs_commander_handle(cmd, line, len, &res, &err);
	if (r == 0) {
		FUZZ_ASSERT(res.line != NULL && res.len > 0, "a result without a line");
		FUZZ_ASSERT(res.status != CQRS_COMMAND_REJECTED || res.code[0] != '\0',
			    "a rejection without a code: %s", res.line);
		cqrs_command_result_free(&res);
	} else {
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR || err.code == CQRS_EXIT_CONFLICT,
			    "command refused with code %d: %s", err.code, err.msg);
	}
	memcpy(line, text, len);
	line[len] = '\0';
	err = (cqrs_error){ 0 };
	if (cqrs_commander_goal_reached(cmd, line, len, &err) < 0)
		FUZZ_ASSERT(err.code == CQRS_EXIT_DATAERR, "goal check code %d: %s", err.code,
			    err.msg);
	free(line);
	return r;
}

#endif
