variable "name" {
  description = "Alias of the Amazon Managed Service for Prometheus workspace."
  type        = string
}

variable "region" {
  description = "Region of the workspace and the SNS topic (the alert manager signs its SNS calls for it)."
  type        = string
}

variable "rules_yaml" {
  description = "Prometheus rule file evaluated in the workspace (ops/prometheus/alerts.yml)."
  type        = string
}

variable "alertmanager_yaml" {
  description = "Alertmanager configuration whose inhibit_rules the workspace's alert manager uses (ops/prometheus/alertmanager.yml)."
  type        = string
}

variable "alert_manager" {
  description = "Create the workspace's alert manager definition (routing to sns_topic_arn)."
  type        = bool
}

variable "sns_topic_arn" {
  description = "SNS topic the alert manager sends every alert to (the stack's alarm topic)."
  type        = string
}
