# Amazon Managed Service for Prometheus: the workspace the ADOT sidecar remote-writes to.
# Query it from Amazon Managed Grafana or any SigV4-capable Prometheus client.

resource "aws_prometheus_workspace" "this" {
  alias = var.name
}
