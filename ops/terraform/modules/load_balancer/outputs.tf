output "security_group_id" {
  description = "Security group of the load balancer (the only source the tasks accept)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "Target group the service registers its tasks in (available once a listener forwards to it, which ECS requires)."
  value       = aws_lb_target_group.this.arn

  # Only the ECS service has to wait for the listener; the cluster, task definition and
  # security group are created meanwhile.
  depends_on = [aws_lb_listener.http, aws_lb_listener.https, aws_lb_listener_rule.no_metrics]
}

output "target_group_arn_suffix" {
  description = "Target group ARN suffix (CloudWatch TargetGroup dimension)."
  value       = aws_lb_target_group.this.arn_suffix
}

output "alb_arn_suffix" {
  description = "Load balancer ARN suffix (CloudWatch LoadBalancer dimension)."
  value       = aws_lb.this.arn_suffix
}

output "dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "url" {
  description = "Where the status page is served."
  value       = local.https ? "https://${var.domain_name != "" ? var.domain_name : aws_lb.this.dns_name}/" : "http://${aws_lb.this.dns_name}/"
}
