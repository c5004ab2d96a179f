output "repository_arn" {
  description = "ARN of the ECR repository."
  value       = aws_ecr_repository.this.arn
}

output "repository_url" {
  description = "URL to push to and pull from (without tag)."
  value       = aws_ecr_repository.this.repository_url
}
