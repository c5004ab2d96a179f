# Amazon Managed Service for Prometheus: the workspace the ADOT sidecar remote-writes to, the
# alert rules of ops/prometheus/alerts.yml evaluated there, and an alert manager that sends
# what fires to the stack's SNS topic, with the inhibit rules of ops/prometheus/alertmanager.yml
# (UpcheckEgressBroken mutes the per-URL alerts). Query it from Amazon Managed Grafana or any
# SigV4-capable Prometheus client.

locals {
  # The self-hosted example is the one source of the inhibit rules; AMP gets the same ones.
  inhibit_rules = yamldecode(var.alertmanager_yaml).inhibit_rules

  alertmanager_config = {
    route = {
      receiver        = "sns"
      group_by        = ["alertname", "job"]
      group_wait      = "30s"
      group_interval  = "5m"
      repeat_interval = "4h"
    }
    receivers = [{
      name = "sns"
      sns_configs = [{
        topic_arn = var.sns_topic_arn
        sigv4     = { region = var.region }
        subject   = "{{ .CommonLabels.alertname }} ({{ .Status }})"
        attributes = {
          severity = "{{ .CommonLabels.severity }}"
        }
      }]
    }]
    inhibit_rules = local.inhibit_rules
  }
}

resource "aws_prometheus_workspace" "this" {
  alias = var.name
}

# The rule file as is: AMP takes the Prometheus rule-file format.
resource "aws_prometheus_rule_group_namespace" "upcheck" {
  name         = "upcheck"
  workspace_id = aws_prometheus_workspace.this.id
  data         = var.rules_yaml
}

resource "aws_prometheus_alert_manager_definition" "this" {
  count = var.alert_manager ? 1 : 0

  workspace_id = aws_prometheus_workspace.this.id
  definition = yamlencode({
    alertmanager_config = yamlencode(local.alertmanager_config)
  })
}
