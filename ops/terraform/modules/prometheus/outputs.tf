output "workspace_arn" {
  description = "ARN of the workspace (the task role may remote-write to it and nothing else)."
  value       = aws_prometheus_workspace.this.arn
}

output "workspace_id" {
  description = "ID of the workspace."
  value       = aws_prometheus_workspace.this.id
}

output "remote_write_url" {
  description = "Prometheus remote-write endpoint of the workspace."
  value       = "${trimsuffix(aws_prometheus_workspace.this.prometheus_endpoint, "/")}/api/v1/remote_write"
}

output "alertmanager_config" {
  description = "The alert manager configuration (YAML) for the workspace: routes to the SNS topic, with the inhibit rules of ops/prometheus/alertmanager.yml."
  value       = yamlencode(local.alertmanager_config)
}
