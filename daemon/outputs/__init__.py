"""Stage five: everything that reads the results store and shows it to someone: the results
document and page, the Prometheus exposition, the results file and CloudWatch sinks, and the
publisher that runs each sink. Nothing here reads anything upstream of the store."""
