# upcheck on ECS Fargate: one `terraform apply` builds the network, storage, registry, load
# balancer, IAM, service, alarms and (optionally) Amazon Managed Prometheus. Each concern lives
# in its own module under modules/; this file only wires them together.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  app_name   = var.app_name == "" ? var.name : var.app_name

  # Bucket names are computed here, not read back from the storage module, so that IAM (which
  # needs the ARNs) and storage (which needs the task role for its bucket policies) do not depend
  # on each other.
  targets_bucket = "${var.name}-targets-${local.account_id}-${var.aws_region}"
  results_bucket = "${var.name}-results-${local.account_id}-${var.aws_region}"
  logs_bucket    = "${var.name}-logs-${local.account_id}-${var.aws_region}"

  # UPCHECK_RESULTS is s3://<results bucket>/<results_key>; with sharding each task writes its
  # part under <results_key>.parts/ (SPEC.md "Sharding"), which IAM and storage scope to.
  results_key          = "${var.results_prefix}/results.json"
  results_parts_prefix = "${local.results_key}.parts/"

  # modules/service names the cluster, the service and the task family after the stack; IAM
  # scopes ecs:ListTasks to this cluster without waiting for the service module.
  cluster_name = var.name

  log_group_name = "/ecs/${var.name}"

  # README "Cost": the profile decides NAT, the load balancer, flow logs and the defaults below.
  lean        = var.profile == "lean"
  url_metrics = var.cloudwatch_url_metrics != null ? var.cloudwatch_url_metrics : (local.lean ? "none" : "ResponseTime")
  budget_usd  = var.monthly_budget_usd != null ? var.monthly_budget_usd : (local.lean ? 100 : 1000)

  # WAF follows the exposure unless set: on for a public ALB (always), off for an internal one.
  enable_waf = var.enable_waf == null ? !var.alb_internal : var.enable_waf

  # CloudWatch alarm periods must be whole minutes; the daemon pushes once per publish interval.
  alarm_period = max(60, ceil(var.publish_interval / 60) * 60)
}

module "encryption" {
  source = "./modules/encryption"

  name       = var.name
  region     = var.aws_region
  account_id = local.account_id
  partition  = local.partition
}

module "network" {
  source = "./modules/network"

  name               = var.name
  cidr               = var.vpc_cidr
  availability_zones = var.availability_zones
  nat_gateway        = !local.lean
  nat_gateway_per_az = var.nat_gateway_per_az
  kms_key_arn        = module.encryption.key_arn
  account_id         = local.account_id

  flow_log_traffic        = local.lean ? "REJECT" : "ALL"
  flow_log_retention_days = local.lean ? 30 : var.log_retention_days
}

module "registry" {
  source = "./modules/registry"

  name        = var.name
  kms_key_arn = module.encryption.key_arn
}

module "prometheus" {
  source = "./modules/prometheus"
  count  = var.enable_amp ? 1 : 0

  name              = var.name
  region            = var.aws_region
  rules_yaml        = file("${path.module}/../prometheus/alerts.yml")
  alertmanager_yaml = file("${path.module}/../prometheus/alertmanager.yml")
  alert_manager     = var.amp_alert_manager
  sns_topic_arn     = module.monitoring.topic_arn
}

module "iam" {
  source = "./modules/iam"

  name                 = var.name
  container_secrets    = var.container_secrets
  account_id           = local.account_id
  partition            = local.partition
  region               = var.aws_region
  ecr_repository_arn   = module.registry.repository_arn
  log_group_name       = local.log_group_name
  targets_bucket       = local.targets_bucket
  targets_key          = var.targets_key
  results_bucket       = local.results_bucket
  results_key          = local.results_key
  results_parts_prefix = local.results_parts_prefix
  shard                = var.shard
  cluster_name         = local.cluster_name
  kms_key_arn          = module.encryption.key_arn
  cloudwatch_namespace = var.cloudwatch_namespace
  enable_amp           = var.enable_amp
  amp_workspace_arn    = var.enable_amp ? module.prometheus[0].workspace_arn : ""
}

module "storage" {
  source = "./modules/storage"

  account_id                = local.account_id
  partition                 = local.partition
  targets_bucket            = local.targets_bucket
  results_bucket            = local.results_bucket
  results_parts_prefix      = var.shard == "ecs" ? local.results_parts_prefix : ""
  logs_bucket               = local.logs_bucket
  kms_key_arn               = module.encryption.key_arn
  task_role_arn             = module.iam.task_role_arn
  admin_principal_arns      = var.bucket_admin_principal_arns
  access_log_retention_days = var.access_log_retention_days
  force_destroy             = var.force_destroy_buckets
}

module "load_balancer" {
  source = "./modules/load_balancer"
  count  = local.lean ? 0 : 1

  name                = var.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = var.alb_internal ? module.network.private_subnet_ids : module.network.public_subnet_ids
  ingress_cidrs       = var.alb_ingress_cidrs
  internal            = var.alb_internal
  authentication      = var.alb_authentication
  oidc_client_secret  = var.alb_oidc_client_secret
  deletion_protection = var.alb_deletion_protection
  access_logs_bucket  = module.storage.logs_bucket
  container_port      = 8080
  health_check_path   = "/health"
  domain_name         = var.domain_name
  route53_zone_id     = var.route53_zone_id
  certificate_arn     = var.certificate_arn
  enable_waf          = local.enable_waf
  waf_rate_limit      = var.waf_rate_limit
  kms_key_arn         = module.encryption.key_arn
  log_retention_days  = var.log_retention_days
}

module "service" {
  source = "./modules/service"

  name                 = var.name
  container_secrets    = var.container_secrets
  region               = var.aws_region
  vpc_id               = module.network.vpc_id
  subnet_ids           = local.lean ? module.network.public_subnet_ids : module.network.private_subnet_ids
  assign_public_ip     = local.lean
  load_balanced        = !local.lean
  alb_security_group   = local.lean ? null : module.load_balancer[0].security_group_id
  target_group_arn     = local.lean ? null : module.load_balancer[0].target_group_arn
  image                = var.container_image != "" ? var.container_image : "${module.registry.repository_url}:${var.image_tag}"
  container_user       = var.container_user
  task_cpu             = var.task_cpu
  task_memory          = var.task_memory
  desired_count        = var.desired_count
  shard                = var.shard
  execution_role_arn   = module.iam.execution_role_arn
  task_role_arn        = module.iam.task_role_arn
  log_group_name       = local.log_group_name
  log_retention_days   = var.log_retention_days
  kms_key_arn          = module.encryption.key_arn
  targets_uri          = "s3://${local.targets_bucket}/${var.targets_key}"
  results_uri          = "s3://${local.results_bucket}/${local.results_key}"
  probe_interval       = var.probe_interval
  probe_timeout        = var.probe_timeout
  probe_concurrency    = var.probe_concurrency
  reload_interval      = var.reload_interval
  publish_interval     = var.publish_interval
  cloudwatch_namespace = var.cloudwatch_namespace
  url_metrics          = local.url_metrics
  app_name             = local.app_name
  enable_amp           = var.enable_amp
  adot_image           = var.adot_image
  amp_remote_write_url = var.enable_amp ? module.prometheus[0].remote_write_url : ""
  amp_scrape_interval  = var.amp_scrape_interval
}

module "monitoring" {
  source = "./modules/monitoring"

  name                  = var.name
  region                = var.aws_region
  account_id            = local.account_id
  kms_key_arn           = module.encryption.key_arn
  alarm_email           = var.alarm_email
  cloudwatch_namespace  = var.cloudwatch_namespace
  app_name              = local.app_name
  period                = local.alarm_period
  targets_down_periods  = var.alarm_targets_down_periods
  silence_periods       = var.alarm_silence_periods
  reload_interval       = var.reload_interval
  cluster_name          = module.service.cluster_name
  service_name          = module.service.service_name
  desired_count         = var.desired_count
  alb_arn_suffix        = local.lean ? "" : module.load_balancer[0].alb_arn_suffix
  target_group_suffix   = local.lean ? "" : module.load_balancer[0].target_group_arn_suffix
  log_group_name        = local.log_group_name
  url_metrics_published = local.url_metrics != "none"
  load_balanced         = !local.lean
  monthly_budget_usd    = local.budget_usd
  budget_tag_filter     = var.budget_by_application_tag ? "user:Application$${var.name}" : ""
}

module "ci" {
  source = "./modules/ci"
  count  = var.github_repository == "" ? 0 : 1

  name                 = var.name
  account_id           = local.account_id
  partition            = local.partition
  region               = var.aws_region
  github_repository    = var.github_repository
  create_oidc_provider = var.github_oidc_provider_arn == ""
  oidc_provider_arn    = var.github_oidc_provider_arn
  deploy_environment   = var.github_deploy_environment
  apply_environment    = var.github_apply_environment
  ecr_repository_arn   = module.registry.repository_arn
  cluster_name         = local.cluster_name
  service_name         = var.name
  execution_role_arn   = module.iam.execution_role_arn
  task_role_arn        = module.iam.task_role_arn
  state_bucket         = var.tf_state_bucket
}
