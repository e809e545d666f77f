# online backup and restore (issue 12): build lines for this piece
lib_libcqrs_a_SOURCES += lib/store/store_backup.c
bin_PROGRAMS += cqrs-backup
cqrs_backup_SOURCES = src/cqrs-backup.c
dist_man_MANS += man/cqrs-backup.1
BATS_SUITES += tests/backup.bats
