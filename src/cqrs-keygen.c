/* cqrs-keygen: an Ed25519 key pair for signing the store's chain heads. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] = "usage: cqrs-keygen [--log-format text|json] file\n"
				 "       cqrs-keygen --public [--log-format text|json] file\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  file                       the private key to create (mode 0600); the\n"
		      "                             public key goes to file.pub (mode 0644)\n"
		      "  -p, --public               print the public key of the private key file\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "public", no_argument, NULL, 'p' },
		{ "log-format", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool public_only = false;
	int ch;

	cqrs_tool_init("cqrs-keygen");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "phV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p': public_only = true; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	if (optind + 1 != argc)
		usage(CQRS_EXIT_USAGE);
	const char *path = argv[optind];

	cqrs_error err = { 0 };
	cqrs_public_key pub;
	if (public_only) {
		cqrs_signing_key *k = cqrs_signing_key_load(path, &err);
		if (k == NULL)
			cqrs_die_error(&err);
		cqrs_signing_key_public(k, &pub);
		cqrs_signing_key_free(k);
	} else if (cqrs_signing_key_generate(path, &pub, &err) < 0) {
		cqrs_die_error(&err);
	}
	cqrs_public_key_write(stdout, &pub);
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}
