"""Stage one: where the targets list comes from (local file or S3), how the CSV is read, and
the reloader that hands each good new list on."""
