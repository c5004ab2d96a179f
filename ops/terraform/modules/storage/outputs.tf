output "targets_bucket" {
  description = "Name of the targets bucket."
  value       = module.targets.name
}

output "results_bucket" {
  description = "Name of the results bucket."
  value       = module.results.name
}

output "logs_bucket" {
  description = "Name of the access-log bucket (ALB logs under alb/, S3 server access logs under s3/)."
  value       = aws_s3_bucket_policy.logs.bucket # ALB log delivery is checked against the policy
}
