output "url" {
  description = "Where the status page is served (https://<domain_name>/ when a domain is given). Lean profile (no load balancer): the status page is results.html beside results_s3_uri; open it with `aws s3 presign`."
  value       = local.lean ? null : module.load_balancer[0].url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (point a CNAME here if Route 53 is not used); null with the lean profile."
  value       = local.lean ? null : module.load_balancer[0].dns_name
}

output "nat_gateway_ids" {
  description = "NAT gateways of the VPC (none with the lean profile)."
  value       = module.network.nat_gateway_ids
}

output "ecr_repository_url" {
  description = "Push the image here: docker push <url>:<image_tag>."
  value       = module.registry.repository_url
}

output "targets_s3_uri" {
  description = "Upload the targets CSV here (UPCHECK_TARGETS)."
  value       = "s3://${module.storage.targets_bucket}/${var.targets_key}"
}

output "results_s3_uri" {
  description = "Where the daemon writes results.json (results.html, the status page, beside it)."
  value       = "s3://${module.storage.results_bucket}/${local.results_key}"
}

output "logs_bucket" {
  description = "Bucket with the ALB and S3 access logs."
  value       = module.storage.logs_bucket
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = module.service.cluster_name
}

output "service_name" {
  description = "ECS service name."
  value       = module.service.service_name
}

output "task_definition_arn" {
  description = "Task definition revision the service runs."
  value       = module.service.task_definition_arn
}

output "log_group_name" {
  description = "CloudWatch Logs group of the containers."
  value       = local.log_group_name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.monitoring.topic_arn
}

output "alarm_names" {
  description = "CloudWatch alarm names."
  value       = module.monitoring.alarm_names
}

output "dashboard_name" {
  description = "CloudWatch dashboard name."
  value       = module.monitoring.dashboard_name
}

output "amp_workspace_id" {
  description = "Amazon Managed Prometheus workspace id (null without enable_amp)."
  value       = var.enable_amp ? module.prometheus[0].workspace_id : null
}

output "amp_remote_write_url" {
  description = "Remote-write URL of the AMP workspace (null without enable_amp)."
  value       = var.enable_amp ? module.prometheus[0].remote_write_url : null
}

output "amp_alertmanager_config" {
  description = "Alertmanager configuration of the AMP workspace (null without enable_amp): every alert to the alarm topic, per-URL alerts muted while UpcheckEgressBroken fires."
  value       = var.enable_amp ? module.prometheus[0].alertmanager_config : null
}

output "budget_name" {
  description = "AWS Budgets budget of the stack (notifies the alarm topic)."
  value       = module.monitoring.budget_name
}

output "github_role_arns" {
  description = "CI roles by job kind (release, deploy, plan, apply): set the repository variables AWS_RELEASE_ROLE_ARN, AWS_DEPLOY_ROLE_ARN, AWS_PLAN_ROLE_ARN and AWS_APPLY_ROLE_ARN to them. null without github_repository."
  value       = var.github_repository == "" ? null : module.ci[0].role_arns
}
