# The daemon on Fargate: desired_count tasks, in private subnets behind NAT (full profile) or in
# public subnets with a public IP and no NAT (lean), reachable on their port from the load
# balancer only (lean has none: nothing may connect in), with a read-only root filesystem, no Linux capabilities and a
# non-root user. With UPCHECK_SHARD=ecs the running tasks of the service share the targets list
# (SPEC.md "Sharding"). With AMP enabled a second container, the ADOT collector, scrapes the
# daemon over localhost and remote-writes to the workspace.

locals {
  container_name = "upcheck"
  container_port = 8080

  # SPEC.md "Configuration": the daemon is configured by these variables only.
  environment = {
    UPCHECK_TARGETS                = var.targets_uri
    UPCHECK_LISTEN                 = "0.0.0.0:${local.container_port}"
    UPCHECK_INTERVAL               = tostring(var.probe_interval)
    UPCHECK_TIMEOUT                = tostring(var.probe_timeout)
    UPCHECK_CONCURRENCY            = tostring(var.probe_concurrency)
    UPCHECK_RELOAD_INTERVAL        = tostring(var.reload_interval)
    UPCHECK_RESULTS                = var.results_uri
    UPCHECK_PUBLISH_INTERVAL       = tostring(var.publish_interval)
    UPCHECK_CLOUDWATCH_NAMESPACE   = var.cloudwatch_namespace
    UPCHECK_CLOUDWATCH_URL_METRICS = var.url_metrics
    UPCHECK_APP_NAME               = var.app_name
    UPCHECK_SHARD                  = var.shard
  }

  # Needs nothing but the Python that runs the daemon; urlopen raises on a 503, so the command
  # fails exactly when /health does.
  health_check_path = "/health"
  health_check_command = [
    "CMD", "python", "-c",
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.container_port}${local.health_check_path}', timeout=3)",
  ]

  # The daemon flushes CloudWatch and the results file within 10 s of SIGTERM (SPEC.md); ECS
  # waits this long before SIGKILL.
  stop_timeout = 30

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = var.region
      awslogs-stream-prefix = "ecs"
    }
  }

  daemon_container = {
    name                   = local.container_name
    image                  = var.image
    essential              = true
    user                   = var.container_user
    readonlyRootFilesystem = true
    entryPoint             = ["python", "-m", "daemon"]
    portMappings           = [{ containerPort = local.container_port, protocol = "tcp" }]
    environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets                = [for k in sort(keys(var.container_secrets)) : { name = k, valueFrom = var.container_secrets[k] }]
    stopTimeout            = local.stop_timeout
    linuxParameters        = { capabilities = { drop = ["ALL"] }, initProcessEnabled = true }
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration       = local.log_configuration
    healthCheck = {
      command     = local.health_check_command
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
  }

  # What the collector's ECS resource detector adds besides aws.ecs.task.arn, and what the
  # prometheus receiver puts on the resource besides service.name and service.instance.id
  # (which the exporter turns back into `job` and `instance`).
  resource_attributes_dropped = [
    "aws.ecs.cluster.arn", "aws.ecs.launchtype", "aws.ecs.task.family", "aws.ecs.task.id",
    "aws.ecs.task.revision", "aws.log.group.arns", "aws.log.group.names", "aws.log.stream.arns",
    "aws.log.stream.names", "cloud.account.id", "cloud.availability_zone", "cloud.platform",
    "cloud.provider", "cloud.region",
    "net.host.name", "net.host.port", "http.scheme", "server.address", "server.port", "url.scheme",
  ]

  # The collector may use this much memory and no more: a hard container limit, so a runaway
  # collector is killed and restarted on its own (it is not essential) instead of starving the
  # daemon; memory_limiter starts refusing data before that.
  adot_memory_limit_mib       = 256
  adot_memory_reservation_mib = 128
  adot_health_endpoint        = "127.0.0.1:13133"

  adot_config = {
    extensions = {
      sigv4auth    = { region = var.region, service = "aps" }
      health_check = { endpoint = local.adot_health_endpoint }
    }
    receivers = {
      prometheus = {
        config = {
          global = {
            scrape_interval = "${var.amp_scrape_interval}s"
            scrape_timeout  = "${min(10, var.amp_scrape_interval)}s"
          }
          scrape_configs = [{
            job_name       = "upcheck"
            metrics_path   = "/metrics"
            static_configs = [{ targets = ["localhost:${local.container_port}"] }]
          }]
        }
      }
    }
    # Every task's collector scrapes its own daemon as localhost:8080, so without a per-task
    # label two tasks (several tasks; during a deployment up to 200 % of them) would write
    # identical series for their daemon-level metrics, and for a URL two tasks export while
    # its ownership moves, and AMP would reject one of them as duplicate / out-of-order
    # samples. The ECS detector reads the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4)
    # and adds aws.ecs.task.arn to the resource; resource_to_telemetry_conversion turns it into
    # the label `aws_ecs_task_arn`. The other resource attributes above are dropped (deleting an
    # absent key is a no-op). What stays on every series besides the daemon's own labels:
    # `job` and `instance`, `aws_ecs_task_arn`, and `service_name` / `service_instance_id`
    # (the same values as job and instance, from the receiver's resource).
    processors = {
      # First in the pipeline: refuses data when the collector nears its memory limit.
      memory_limiter = {
        check_interval         = "1s"
        limit_percentage       = 80
        spike_limit_percentage = 25
      }
      batch = {}
      "resourcedetection/ecs" = {
        detectors = ["ecs"]
        timeout   = "5s"
        override  = false
      }
      "resource/task_only" = {
        attributes = [for key in local.resource_attributes_dropped : { key = key, action = "delete" }]
      }
    }
    exporters = {
      prometheusremotewrite = {
        endpoint                         = var.amp_remote_write_url
        auth                             = { authenticator = "sigv4auth" }
        resource_to_telemetry_conversion = { enabled = true }
      }
    }
    service = {
      extensions = ["sigv4auth", "health_check"]
      pipelines = {
        metrics = {
          receivers  = ["prometheus"]
          processors = ["memory_limiter", "resourcedetection/ecs", "resource/task_only", "batch"]
          exporters  = ["prometheusremotewrite"]
        }
      }
    }
  }

  adot_container = {
    name                   = "adot-collector"
    image                  = var.adot_image
    essential              = false # losing the collector must not stop probing
    user                   = var.container_user
    readonlyRootFilesystem = true
    memory                 = local.adot_memory_limit_mib
    memoryReservation      = local.adot_memory_reservation_mib
    environment            = [{ name = "AOT_CONFIG_CONTENT", value = yamlencode(local.adot_config) }]
    linuxParameters        = { capabilities = { drop = ["ALL"] } }
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    # The ADOT image's own probe of the health_check extension (/healthcheck, in the image).
    healthCheck = {
      command     = ["CMD", "/healthcheck"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = merge(local.log_configuration, {
      options = merge(local.log_configuration.options, { awslogs-stream-prefix = "adot" })
    })
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = var.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_security_group" "task" {
  name        = "${var.name}-task"
  description = "upcheck tasks: the daemon port from the load balancer only; out to the monitored URLs"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-task" }
}

resource "aws_vpc_security_group_ingress_rule" "task_from_alb" {
  count = var.load_balanced ? 1 : 0

  security_group_id            = aws_security_group.task.id
  description                  = "Daemon port from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = var.alb_security_group
}

resource "aws_vpc_security_group_egress_rule" "alb_to_task" {
  count = var.load_balanced ? 1 : 0

  security_group_id            = var.alb_security_group
  description                  = "Load balancer to the daemon port of the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
  referenced_security_group_id = aws_security_group.task.id
}

# A URL monitor must reach whatever URLs its CSV names, on any TCP port; AWS APIs, ECR and the
# AMP endpoint are reached the same way, through NAT or the task's public IP (S3 through the
# gateway endpoint). Nothing is allowed in but the ALB, and with no ALB nothing at all.
resource "aws_vpc_security_group_egress_rule" "task_out" {
  security_group_id = aws_security_group.task.id
  description       = "Probes, AWS APIs and image pulls (TCP, any port)"
  ip_protocol       = "tcp"
  from_port         = 1
  to_port           = 65535
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Scratch space on the task's ephemeral storage, since the root filesystems are read-only.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat(
    [local.daemon_container],
    var.enable_amp ? [local.adot_container] : [],
  ))
}

resource "aws_ecs_service" "this" {
  name             = var.name
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  propagate_tags                    = "SERVICE"
  enable_ecs_managed_tags           = true
  health_check_grace_period_seconds = var.load_balanced ? 60 : null

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.task.id]
    assign_public_ip = var.assign_public_ip
  }

  dynamic "load_balancer" {
    for_each = var.load_balanced ? [var.target_group_arn] : []

    content {
      target_group_arn = load_balancer.value
      container_name   = local.container_name
      container_port   = local.container_port
    }
  }

  # The release pipeline (.github/workflows/release.yml) rolls out each new image as a new
  # task-definition revision. Without this, the next `terraform apply` would put the service
  # back on Terraform's revision and silently roll the image back. A revision Terraform
  # registers is rolled out by infra.yml after the apply (update-service), planned with the
  # running image and refused if a release changed that image since the plan.
  lifecycle {
    ignore_changes = [task_definition]
  }
}
