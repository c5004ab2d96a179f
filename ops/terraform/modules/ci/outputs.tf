output "role_arns" {
  description = "ARNs of the CI roles by job kind: release, deploy, plan, apply (the repository variables AWS_*_ROLE_ARN)."
  value       = { for kind, role in aws_iam_role.ci : kind => role.arn }
}

output "oidc_provider_arn" {
  description = "The GitHub OIDC provider the roles trust."
  value       = local.provider_arn
}
