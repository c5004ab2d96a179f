output "topic_arn" {
  description = "SNS topic the alarms notify; subscribe pagers or chat integrations to it."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Names of the alarms."
  value = concat(
    [
      aws_cloudwatch_metric_alarm.targets_down.alarm_name,
      aws_cloudwatch_metric_alarm.targets_invalid.alarm_name,
      aws_cloudwatch_metric_alarm.silent.alarm_name,
    ],
    aws_cloudwatch_metric_alarm.running_tasks[*].alarm_name,
  )
}

output "budget_name" {
  description = "Name of the AWS Budgets budget (null without one)."
  value       = one(aws_budgets_budget.monthly[*].name)
}
