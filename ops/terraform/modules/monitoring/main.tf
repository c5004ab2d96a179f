# Alarms on the SPEC.md CloudWatch figures (namespace from config, dimension Application) and
# on the ECS service, all notifying one encrypted SNS topic; plus a dashboard of the same.
#
# However many tasks run, each figure has one source (SPEC.md "Sharding"): the per-application
# ones (TargetsTotal/Up/Down, TargetsLoadSuccess) come from the one task that merges the results,
# per-URL ones from the task that owns the URL. So the alarms below read the same series whether
# desired_count is 1 or 30, and a deployment does not double them. For the moment a task takes
# over the merge (one membership refresh) two tasks may publish: the statistics used (Minimum,
# SampleCount < 1) are not moved by a second, equal datum.

locals {
  dimensions = { Application = var.app_name }
  actions    = [aws_sns_topic.alarms.arn]

  # TargetsLoadSuccess stays 0 from a failed load until the next load, one reload interval
  # later; as a per-period Minimum, one transient read error can thus touch up to
  # ceil(reload / period) + 1 periods. One period more means at least two loads in a row
  # failed. CloudWatch allows at most a day of evaluation.
  targets_invalid_periods = min(ceil(var.reload_interval / var.period) + 2, floor(86400 / var.period))

  # The window over which a URL counts as down for good: targets_down_periods periods, at most
  # 12 hours (the alarm compares two windows, and CloudWatch evaluates at most a day).
  down_window = min(var.targets_down_periods * var.period, 43200)
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }

  # AWS Budgets notifies the same topic when the stack runs over its budget.
  statement {
    sid       = "BudgetsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }

  # The AMP alert manager (enable_amp) sends the Prometheus alerts to the same topic.
  statement {
    sid       = "ManagedPrometheusAlertManagerOfThisAccount"
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["aps.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# A URL starts failing for good: more URLs were down throughout the last window (TargetsDown's
# Minimum over targets_down_periods periods) than throughout the window before. An alarm on
# "TargetsDown >= 1" stayed in ALARM while any one URL was dead, so every later failure went
# unnoticed; this one fires once per increase and is OK again in the next window, ready for the
# next failure (no OK notification: a recovery is not news to page on). A blip shorter than a
# window never moves the Minimum.
resource "aws_cloudwatch_metric_alarm" "targets_down" {
  alarm_name          = "${var.name}-targets-down"
  alarm_description   = "More URLs have been down for a whole ${local.down_window}s window than in the window before: a new URL keeps failing. See the status page or results.json for which."
  evaluation_periods  = 2
  datapoints_to_alarm = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching" # silence has its own alarm below
  alarm_actions       = local.actions

  metric_query {
    id          = "down"
    return_data = false

    metric {
      namespace   = var.cloudwatch_namespace
      metric_name = "TargetsDown"
      dimensions  = local.dimensions
      stat        = "Minimum"
      period      = local.down_window
    }
  }

  metric_query {
    id          = "newly_down"
    expression  = "DIFF(down)"
    label       = "URLs down for a whole window, more than in the window before"
    return_data = true
  }
}

# The targets file was rejected (unreadable, unparsable, or no valid row): the daemon keeps the
# last good list, so nothing else would show it. Not on a single transient read error: only when
# consecutive loads fail (see targets_invalid_periods).
resource "aws_cloudwatch_metric_alarm" "targets_invalid" {
  alarm_name          = "${var.name}-targets-file-invalid"
  alarm_description   = "Loads of the targets CSV keep failing (TargetsLoadSuccess < 1 for ${local.targets_invalid_periods} periods of ${var.period}s: at least two loads in a row); the previous list stays in force. Check the task logs for line numbers."
  namespace           = var.cloudwatch_namespace
  metric_name         = "TargetsLoadSuccess"
  dimensions          = local.dimensions
  statistic           = "Minimum"
  period              = var.period
  evaluation_periods  = local.targets_invalid_periods
  datapoints_to_alarm = local.targets_invalid_periods
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# The daemon went silent: no TargetsTotal datum at all while the service should run. Missing
# data is the failure itself, but a paused service (desired count 0, by Terraform or by hand)
# sends nothing on purpose: ECS's DesiredTaskCount (Container Insights) decides, and when it is
# missing too, the desired_count Terraform set.
resource "aws_cloudwatch_metric_alarm" "silent" {
  alarm_name          = "${var.name}-daemon-silent"
  alarm_description   = "No metrics from the daemon for ${var.silence_periods} periods of ${var.period}s while the ECS service wants tasks running: it is down, stuck, or cannot reach CloudWatch."
  evaluation_periods  = var.silence_periods
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = var.desired_count > 0 ? "breaching" : "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "sent"
    return_data = false

    metric {
      namespace   = var.cloudwatch_namespace
      metric_name = "TargetsTotal"
      dimensions  = local.dimensions
      stat        = "SampleCount"
      period      = var.period
    }
  }

  metric_query {
    id          = "desired"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      dimensions  = { ClusterName = var.cluster_name, ServiceName = var.service_name }
      stat        = "Maximum"
      period      = var.period
    }
  }

  metric_query {
    id          = "silent_while_wanted"
    expression  = "IF(FILL(desired, ${var.desired_count}) > 0 AND FILL(sent, 0) < 1, 1, 0)"
    label       = "1 while tasks are wanted and the daemon sends nothing"
    return_data = true
  }
}

# Fewer tasks running than desired (crash loop, failed deployment, capacity). With several
# tasks sharing the list, the others take over a missing task's URLs within two membership
# refreshes, so this is lost capacity (probes may start late), not lost coverage; a service with
# no task at all also trips the silence alarm. A deployment never counts: with a minimum healthy
# percent of 100 the old tasks keep running until their replacements are up.
resource "aws_cloudwatch_metric_alarm" "running_tasks" {
  count = var.desired_count > 0 ? 1 : 0

  alarm_name          = "${var.name}-running-tasks"
  alarm_description   = "The ECS service has run fewer than its ${var.desired_count} task(s) for 3 minutes. The running tasks cover the missing ones' URLs (sharding), with less capacity; check the service's events and stopped tasks."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = var.service_name }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.desired_count
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name

  dashboard_body = jsonencode({
    widgets = concat(
      [
        {
          type = "metric", x = 0, y = 0, width = 12, height = 6
          properties = {
            title  = "Targets"
            region = var.region
            stat   = "Average"
            period = var.period
            metrics = [
              [var.cloudwatch_namespace, "TargetsTotal", "Application", var.app_name],
              [var.cloudwatch_namespace, "TargetsUp", "Application", var.app_name],
              [var.cloudwatch_namespace, "TargetsDown", "Application", var.app_name],
            ]
          }
        },
        {
          type = "metric", x = 12, y = 0, width = 12, height = 6
          properties = {
            title   = "Targets file loaded (1 = ok)"
            region  = var.region
            stat    = "Minimum"
            period  = var.period
            metrics = [[var.cloudwatch_namespace, "TargetsLoadSuccess", "Application", var.app_name]]
            yAxis   = { left = { min = 0, max = 1 } }
          }
        },
        {
          type = "metric", x = 0, y = 6, width = 8, height = 6
          properties = {
            title  = "ECS service"
            region = var.region
            stat   = "Average"
            period = 60
            metrics = [
              ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.service_name],
              ["ECS/ContainerInsights", "DesiredTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.service_name],
              ["AWS/ECS", "CPUUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name],
              ["AWS/ECS", "MemoryUtilization", "ClusterName", var.cluster_name, "ServiceName", var.service_name],
            ]
          }
        },
        {
          type = "alarm", x = 16, y = 6, width = 8, height = 6
          properties = {
            title = "Alarms"
            alarms = concat(
              [
                aws_cloudwatch_metric_alarm.targets_down.arn,
                aws_cloudwatch_metric_alarm.targets_invalid.arn,
                aws_cloudwatch_metric_alarm.silent.arn,
              ],
              aws_cloudwatch_metric_alarm.running_tasks[*].arn,
            )
          }
        },
        {
          type = "log", x = 0, y = 12, width = 24, height = 6
          properties = {
            title  = "Daemon errors and rejected targets rows"
            region = var.region
            query  = "SOURCE '${var.log_group_name}' | fields @timestamp, @message | filter @message like /(?i)(error|exception|line [0-9]+:)/ | sort @timestamp desc | limit 50"
          }
        },
      ],
      var.load_balanced ? [
        {
          type = "metric", x = 8, y = 6, width = 8, height = 6
          properties = {
            title  = "Load balancer"
            region = var.region
            stat   = "Sum"
            period = 60
            metrics = [
              ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", var.alb_arn_suffix],
              ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", var.alb_arn_suffix],
              ["AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup", var.target_group_suffix, "LoadBalancer", var.alb_arn_suffix, { stat = "Maximum" }],
            ]
          }
        },
      ] : [],
      var.url_metrics_published ? [
        {
          type = "metric", x = 0, y = 18, width = 24, height = 6
          properties = {
            title  = "Slowest URLs (highest ResponseTime, top 10)"
            region = var.region
            period = var.period
            metrics = [[{
              expression = "SELECT MAX(ResponseTime) FROM SCHEMA(\"${var.cloudwatch_namespace}\", Application, Url) WHERE Application = '${var.app_name}' GROUP BY Url ORDER BY MAX() DESC LIMIT 10"
              id         = "slowest"
              label      = "ResponseTime"
            }]]
          }
        },
      ] : [],
    )
  })
}

# What the stack may cost, watched by AWS Budgets: 80 % of the month's budget spent, or the
# month forecast to exceed it, notifies the alarm topic (README "Cost" has the arithmetic). With
# budget_tag_filter it counts the costs tagged Application = <name> only, which needs that cost
# allocation tag activated; without, the whole account.
resource "aws_budgets_budget" "monthly" {
  count = var.monthly_budget_usd > 0 ? 1 : 0

  account_id   = var.account_id
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  dynamic "cost_filter" {
    for_each = var.budget_tag_filter == "" ? [] : [var.budget_tag_filter]

    content {
      name   = "TagKeyValue"
      values = [cost_filter.value]
    }
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    notification_type         = "ACTUAL"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }

  depends_on = [aws_sns_topic_policy.alarms]
}
