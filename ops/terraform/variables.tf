# ---------------------------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------------------------
variable "name" {
  description = "Name prefix of every resource (and default CloudWatch Application dimension). Lower-case letters, digits and dashes."
  type        = string
  default     = "upcheck"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters: a lower-case letter, then lower-case letters, digits or dashes."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags added to every resource (on top of Application, ManagedBy and Component)."
  type        = map(string)
  default     = {}
}

# Two documented profiles (README "Cost"): what the stack costs is mostly decided here.
variable "profile" {
  description = "\"lean\" (the default): no NAT gateway (tasks in the public subnets with a public IP, the same security group, nothing may connect in), no load balancer (the status page is results.html in the results bucket), an S3 gateway endpoint, VPC flow logs of rejected traffic kept 30 days, no per-URL CloudWatch metrics, no AMP: 10,000 URLs every 60 s for under $100 a month. \"full\": private subnets behind NAT, the load balancer (internal by default), flow logs of all traffic, per-URL ResponseTime in CloudWatch, AMP available."
  type        = string
  default     = "lean"

  validation {
    condition     = contains(["lean", "full"], var.profile)
    error_message = "profile must be \"lean\" or \"full\"."
  }
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
variable "vpc_cidr" {
  description = "CIDR block of the VPC; it is split into /20 subnets (two public, two private)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of size /20 or larger (for example 10.40.0.0/16)."
  }
}

variable "availability_zones" {
  description = "The two availability zones (names) to spread over. Empty: <region>a and <region>b."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2)
    error_message = "availability_zones must be empty or name exactly two distinct zones."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (survives the loss of an AZ, about $33/month more) instead of one shared NAT gateway."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Load balancer and HTTPS
# ---------------------------------------------------------------------------------------------
variable "domain_name" {
  description = "Host name for the status page (for example status.example.com). With it (or certificate_arn) the ALB serves HTTPS with an ACM certificate and redirects HTTP there. Empty and no certificate_arn: an internal ALB serves plain HTTP inside the VPC only."
  type        = string
  default     = ""

  validation {
    condition     = var.domain_name == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be empty or a lower-case DNS name such as status.example.com (no wildcard)."
  }
}

variable "route53_zone_id" {
  description = "Route 53 public hosted zone that holds domain_name. When set, the certificate is validated through it and an alias record points domain_name at the ALB."
  type        = string
  default     = ""

  validation {
    condition     = var.route53_zone_id == "" || can(regex("^[A-Z0-9]{1,32}$", var.route53_zone_id))
    error_message = "route53_zone_id must be empty or a hosted zone id such as Z0123456789ABCDEFGHIJ."
  }
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate (same region) for the HTTPS listener. Empty with a domain_name: one is created and validated through route53_zone_id."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be empty or an ACM certificate ARN."
  }

  validation {
    condition     = var.domain_name == "" || var.certificate_arn != "" || var.route53_zone_id != ""
    error_message = "With domain_name set, give either certificate_arn or route53_zone_id (to validate a new certificate)."
  }
}

# Required, with no default: even an internal ALB should admit only the networks that need the
# page (the VPC, a VPN, peered ranges).
variable "alb_ingress_cidrs" {
  description = "Required with profile = \"full\" (lean has no load balancer). IPv4 CIDR blocks allowed to reach the load balancer: the VPC's own range, VPN or peered ranges for the internal ALB (the default); office ranges or [\"0.0.0.0/0\"] for a public one (which also needs HTTPS and alb_authentication)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.alb_ingress_cidrs == null ? var.profile == "lean" : (length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))]))
    error_message = "alb_ingress_cidrs must be a non-empty list of IPv4 CIDR blocks, and is required with profile = \"full\": who may reach the load balancer is never a default."
  }
}

# Private by default. The page and /results list every monitored URL with its errors and hand
# out presigned links to the results: on the internet they must sit behind HTTPS and a login.
variable "alb_internal" {
  description = "Internal load balancer (the default): no public address, reachable from the VPC and the networks peered or VPN-connected to it. false makes it internet-facing, which requires HTTPS (domain_name or certificate_arn) and alb_authentication."
  type        = bool
  default     = true

  validation {
    condition     = var.alb_internal || ((var.domain_name != "" || var.certificate_arn != "") && var.alb_authentication.type != "none")
    error_message = "A public load balancer (alb_internal = false) needs HTTPS (domain_name or certificate_arn) and alb_authentication (type \"oidc\" or \"cognito\"): the page and /results expose every URL and presigned links to the results."
  }
}

variable "alb_authentication" {
  description = "Who may use the HTTPS listener: type \"none\" (only allowed on an internal ALB), \"oidc\" (any OpenID Connect provider: set oidc and alb_oidc_client_secret) or \"cognito\" (set cognito). Every path but /metrics (always 404 at the ALB) passes the ALB's authenticate action first, /results and its presigned links included."
  type = object({
    type = string
    oidc = optional(object({
      issuer                 = string
      authorization_endpoint = string
      token_endpoint         = string
      user_info_endpoint     = string
      client_id              = string
      scope                  = optional(string, "openid")
    }))
    cognito = optional(object({
      user_pool_arn       = string
      user_pool_client_id = string
      user_pool_domain    = string
    }))
    session_timeout = optional(number, 28800)
  })
  default = { type = "none" }

  validation {
    condition     = contains(["none", "oidc", "cognito"], var.alb_authentication.type)
    error_message = "alb_authentication.type must be \"none\", \"oidc\" or \"cognito\"."
  }

  validation {
    condition     = var.alb_authentication.type != "oidc" || var.alb_authentication.oidc != null
    error_message = "alb_authentication.type = \"oidc\" needs alb_authentication.oidc (issuer, endpoints, client_id)."
  }

  validation {
    condition     = var.alb_authentication.type != "cognito" || var.alb_authentication.cognito != null
    error_message = "alb_authentication.type = \"cognito\" needs alb_authentication.cognito (user_pool_arn, user_pool_client_id, user_pool_domain)."
  }

  validation {
    condition     = var.alb_authentication.type == "none" || var.domain_name != "" || var.certificate_arn != ""
    error_message = "ALB authentication runs on the HTTPS listener only: set domain_name or certificate_arn too."
  }
}

variable "alb_oidc_client_secret" {
  description = "Client secret of the OIDC application (alb_authentication.type = \"oidc\"). Pass it as TF_VAR_alb_oidc_client_secret from a secret store, never in a committed file; it is stored in the Terraform state, which must be encrypted."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alb_authentication.type != "oidc" || var.alb_oidc_client_secret != ""
    error_message = "alb_authentication.type = \"oidc\" needs alb_oidc_client_secret."
  }
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer against deletion. Turn off before `terraform destroy`."
  type        = bool
  default     = true
}

variable "enable_waf" {
  description = "Attach an AWS WAF web ACL (AWS managed common, known-bad-inputs and IP reputation rules, plus a per-IP rate limit) to the load balancer. null (the default): on for a public ALB, off for an internal one. A public ALB always has it."
  type        = bool
  default     = null

  validation {
    condition     = var.alb_internal || var.enable_waf != false
    error_message = "A public load balancer always has WAF: leave enable_waf unset (null) or true."
  }
}

variable "waf_rate_limit" {
  description = "Requests one client IP may make in 5 minutes before WAF blocks it."
  type        = number
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 100 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be between 100 and 2,000,000,000."
  }
}

# ---------------------------------------------------------------------------------------------
# Container and task
# ---------------------------------------------------------------------------------------------
variable "image_tag" {
  description = "Tag of the upcheck image in the stack's ECR repository (tags are immutable there, so use a version or a git SHA)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid image tag other than \"latest\" (the repository has immutable tags)."
  }
}

variable "container_image" {
  description = "Full image reference to run instead of <ECR repository>:<image_tag> (for example an image in a shared registry). The execution role can pull only from this stack's repository and public registries."
  type        = string
  default     = ""
}

variable "container_user" {
  description = "uid:gid the daemon runs as; never root."
  type        = string
  default     = "10001:10001"

  validation {
    condition     = can(regex("^[1-9][0-9]*(:[1-9][0-9]*)?$", var.container_user))
    error_message = "container_user must be a numeric uid or uid:gid other than 0 (root)."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU), shared by the daemon and, with enable_amp, the collector."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.task_cpu)
    error_message = "task_cpu must be one of 256, 512, 1024, 2048, 4096."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a valid combination with task_cpu (see README)."
  type        = number
  default     = 1024

  validation {
    condition = (
      (var.task_cpu == 256 && contains([512, 1024, 2048], var.task_memory)) ||
      (var.task_cpu == 512 && var.task_memory >= 1024 && var.task_memory <= 4096 && var.task_memory % 1024 == 0) ||
      (var.task_cpu == 1024 && var.task_memory >= 2048 && var.task_memory <= 8192 && var.task_memory % 1024 == 0) ||
      (var.task_cpu == 2048 && var.task_memory >= 4096 && var.task_memory <= 16384 && var.task_memory % 1024 == 0) ||
      (var.task_cpu == 4096 && var.task_memory >= 8192 && var.task_memory <= 30720 && var.task_memory % 1024 == 0)
    )
    error_message = "task_memory is not a valid Fargate combination with task_cpu (e.g. 256/512, 512/1024, 1024/2048)."
  }
}

variable "desired_count" {
  description = "Number of running tasks, 0 to pause. With shard = \"ecs\" (the default) the running tasks share the targets list, each probing about 1/desired_count of it, so adding tasks adds capacity and no task is a single point of failure."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_count >= 0 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number: 0 (paused) or the number of tasks to run."
  }
}

variable "shard" {
  description = "UPCHECK_SHARD: how the tasks share the targets list. \"ecs\": the running tasks of the service split it between them (each task finds its peers with ecs:ListTasks every 30 s), during deployments too. \"off\": every task probes every URL, which is only sound with desired_count 0 or 1 and still probes twice while a deployment overlaps old and new tasks."
  type        = string
  default     = "ecs"

  validation {
    condition     = contains(["ecs", "off"], var.shard)
    error_message = "shard must be \"ecs\" or \"off\" (a static INDEX/COUNT cannot be told apart per task: every task of a service runs the same task definition)."
  }

  validation {
    condition     = var.shard == "ecs" || var.desired_count <= 1
    error_message = "With shard = \"off\" every task probes every URL: more than one task would probe each URL several times and count it several times in CloudWatch. Keep shard = \"ecs\" to run several tasks."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the task and WAF logs, and with profile = \"full\" the VPC flow logs (lean keeps its rejected-traffic flow logs 30 days)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

# ---------------------------------------------------------------------------------------------
# Daemon settings (SPEC.md "Configuration"; passed as UPCHECK_* environment variables)
# ---------------------------------------------------------------------------------------------
variable "targets_key" {
  description = "Key of the targets CSV in the targets bucket (UPCHECK_TARGETS = s3://<targets bucket>/<targets_key>)."
  type        = string
  default     = "targets/urls.csv"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-][A-Za-z0-9!_.*'()/-]*$", var.targets_key)) && !endswith(var.targets_key, "/")
    error_message = "targets_key must be a plain S3 object key (no leading or trailing slash)."
  }
}

variable "results_prefix" {
  description = "Prefix in the results bucket under which the daemon writes results.json and results.html (and, sharded, results.json.parts/)."
  type        = string
  default     = "results"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.results_prefix))
    error_message = "results_prefix must be one or more path segments without leading or trailing slash (for example results or prod/upcheck)."
  }
}

variable "probe_interval" {
  description = "UPCHECK_INTERVAL: seconds between two probes of one URL."
  type        = number
  default     = 60

  validation {
    condition     = var.probe_interval >= 1 && var.probe_interval <= 86400
    error_message = "probe_interval must be between 1 and 86400 seconds."
  }
}

variable "probe_timeout" {
  description = "UPCHECK_TIMEOUT: hard deadline in seconds for one whole probe."
  type        = number
  default     = 10

  validation {
    condition     = var.probe_timeout > 0 && var.probe_timeout <= 300
    error_message = "probe_timeout must be greater than 0 and at most 300 seconds."
  }
}

variable "probe_concurrency" {
  description = "UPCHECK_CONCURRENCY: most probes in flight at once."
  type        = number
  default     = 500

  validation {
    condition     = var.probe_concurrency >= 1 && var.probe_concurrency <= 10000 && floor(var.probe_concurrency) == var.probe_concurrency
    error_message = "probe_concurrency must be a whole number between 1 and 10000."
  }
}

variable "reload_interval" {
  description = "UPCHECK_RELOAD_INTERVAL: seconds between checks of the targets CSV for change."
  type        = number
  default     = 60

  validation {
    condition     = var.reload_interval >= 1 && var.reload_interval <= 86400
    error_message = "reload_interval must be between 1 and 86400 seconds."
  }
}

variable "publish_interval" {
  description = "UPCHECK_PUBLISH_INTERVAL: seconds between results-file writes and CloudWatch pushes. Alarms evaluate over periods of this length rounded up to a whole minute."
  type        = number
  default     = 60

  validation {
    condition     = var.publish_interval >= 10 && var.publish_interval <= 3600
    error_message = "publish_interval must be between 10 and 3600 seconds."
  }
}

variable "cloudwatch_namespace" {
  description = "UPCHECK_CLOUDWATCH_NAMESPACE: CloudWatch namespace the daemon publishes to; the task role may publish to this namespace only."
  type        = string
  default     = "Upcheck"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/#:-]{0,254}$", var.cloudwatch_namespace)) && !startswith(var.cloudwatch_namespace, "AWS/")
    error_message = "cloudwatch_namespace must be a valid custom namespace (not empty, not starting with AWS/)."
  }
}

variable "cloudwatch_url_metrics" {
  description = "UPCHECK_CLOUDWATCH_URL_METRICS: per-URL CloudWatch metrics, a comma list of ResponseTime, Up, StatusCode, or none. Each is billed as one custom metric per URL (see README \"Cost\"). null (the default): none with the lean profile, ResponseTime with the full one."
  type        = string
  default     = null

  validation {
    condition     = var.cloudwatch_url_metrics == null || var.cloudwatch_url_metrics == "none" || alltrue([for m in split(",", coalesce(var.cloudwatch_url_metrics, "none")) : contains(["ResponseTime", "Up", "StatusCode"], m)])
    error_message = "cloudwatch_url_metrics must be none or a comma list of ResponseTime, Up, StatusCode."
  }
}

variable "app_name" {
  description = "UPCHECK_APP_NAME: value of the CloudWatch Application dimension. Empty: the value of name."
  type        = string
  default     = ""

  validation {
    condition     = length(var.app_name) <= 255
    error_message = "app_name must be at most 255 characters (a CloudWatch dimension value)."
  }
}

# ---------------------------------------------------------------------------------------------
# Storage access
# ---------------------------------------------------------------------------------------------
# Required, with no default: the bucket policies deny object access to everybody not listed,
# account administrators and the principal running Terraform included. An empty list deployed a
# stack nobody could upload the targets CSV to, or destroy with force_destroy_buckets.
variable "bucket_admin_principal_arns" {
  description = "IAM role or user ARNs (besides the task role) allowed to read, write and delete objects in the targets and results buckets: the role that uploads the targets CSV (CI or an operator role) and the role that runs `terraform destroy`. Everybody else is denied by the bucket policies. Required, at least one."
  type        = list(string)

  validation {
    condition     = length(var.bucket_admin_principal_arns) > 0
    error_message = "bucket_admin_principal_arns must list at least one role or user ARN (the one that uploads the targets CSV): the bucket policies deny object access to everybody else, administrators included."
  }

  validation {
    condition     = alltrue([for a in var.bucket_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", a))])
    error_message = "bucket_admin_principal_arns must hold IAM role or user ARNs."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the buckets even when they still hold objects (logs, results, the targets CSV). Keep false in production."
  type        = bool
  default     = false
}

variable "access_log_retention_days" {
  description = "Days the ALB and S3 access logs are kept in the logs bucket."
  type        = number
  default     = 90

  validation {
    condition     = var.access_log_retention_days >= 1 && var.access_log_retention_days <= 3653
    error_message = "access_log_retention_days must be between 1 and 3653."
  }
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------
variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (the recipient must confirm). Empty: no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }
}

variable "alarm_targets_down_periods" {
  description = "Length, in publish periods, of the window a URL must be down throughout to count as down for good: the targets-down alarm fires when more URLs are down for a whole window than in the window before (once per increase, so a URL that stays dead never hides a new failure)."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_targets_down_periods >= 1 && var.alarm_targets_down_periods <= 100
    error_message = "alarm_targets_down_periods must be between 1 and 100."
  }
}

variable "alarm_silence_periods" {
  description = "Consecutive publish periods without any datum from the daemon before the silence alarm fires."
  type        = number
  default     = 3

  validation {
    condition     = var.alarm_silence_periods >= 1 && var.alarm_silence_periods <= 100
    error_message = "alarm_silence_periods must be between 1 and 100."
  }
}

# ---------------------------------------------------------------------------------------------
# Amazon Managed Service for Prometheus
# ---------------------------------------------------------------------------------------------
variable "enable_amp" {
  description = "Create an Amazon Managed Service for Prometheus workspace and run an ADOT collector sidecar that scrapes the daemon's /metrics and remote-writes there (profile = \"full\" only)."
  type        = bool
  default     = false

  validation {
    condition     = !var.enable_amp || var.profile == "full"
    error_message = "enable_amp needs profile = \"full\": the lean profile keeps AMP off to stay under its budget."
  }
}

variable "amp_alert_manager" {
  description = "With enable_amp: give the workspace an alert manager that sends the alerts of ops/prometheus/alerts.yml to the alarm SNS topic, with the inhibit rules of ops/prometheus/alertmanager.yml. false: the rules still run; route their alerts yourself."
  type        = bool
  default     = true
}

variable "adot_image" {
  description = "AWS Distro for OpenTelemetry collector image used as the sidecar when enable_amp is true. Pin a version."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"

  validation {
    condition     = can(regex(":[A-Za-z0-9_.-]+$|@sha256:[a-f0-9]{64}$", var.adot_image)) && !endswith(var.adot_image, ":latest")
    error_message = "adot_image must be pinned to a version tag or digest (not :latest)."
  }
}

variable "amp_scrape_interval" {
  description = "How often the collector scrapes /metrics, in seconds. AMP bills per sample ingested, and probes run once per probe_interval, so scraping faster than that mostly buys duplicate samples."
  type        = number
  default     = 60

  validation {
    condition     = var.amp_scrape_interval >= 5 && var.amp_scrape_interval <= 300
    error_message = "amp_scrape_interval must be between 5 and 300 seconds."
  }
}

# ---------------------------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------------------------
variable "monthly_budget_usd" {
  description = "Monthly cost budget (USD) of an AWS Budgets budget that notifies the alarm topic at 80 % of actual and 100 % of forecast spend. null: 100 with the lean profile, 1000 with the full one (README \"Cost\" has the arithmetic for 1k, 10k and 100k URLs). 0: no budget in this stack (the account has its own)."
  type        = number
  default     = null

  validation {
    condition     = var.monthly_budget_usd == null || coalesce(var.monthly_budget_usd, 0) >= 0
    error_message = "monthly_budget_usd must be 0 (no budget) or a positive amount of USD, or null for the profile's default."
  }
}

variable "budget_by_application_tag" {
  description = "Count only costs tagged Application = <name> in the budget. Turn on only after activating the Application cost allocation tag in the Billing console (else the budget sees no cost at all); off, it counts the whole account."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# CI (GitHub Actions through OIDC; README "CI roles")
# ---------------------------------------------------------------------------------------------
variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows deploy this stack. Set: the GitHub OIDC provider and the release, deploy, plan and apply roles are created, each trusted for its job's exact OIDC subject. Empty: none (create them elsewhere)."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be empty or owner/name."
  }
}

variable "github_oidc_provider_arn" {
  description = "ARN of the account's existing GitHub OIDC provider (an account has one per issuer). Empty: this stack creates it."
  type        = string
  default     = ""

  validation {
    condition     = var.github_oidc_provider_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.github_oidc_provider_arn))
    error_message = "github_oidc_provider_arn must be empty or the ARN of the token.actions.githubusercontent.com OIDC provider."
  }
}

variable "github_deploy_environment" {
  description = "GitHub environment of release.yml's deploy job: the only OIDC subject the deploy role trusts."
  type        = string
  default     = "production-deploy"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.github_deploy_environment))
    error_message = "github_deploy_environment must be a plain environment name."
  }
}

variable "github_apply_environment" {
  description = "GitHub environment of infra.yml's apply job: the only OIDC subject the apply role trusts. Must differ from github_deploy_environment."
  type        = string
  default     = "production-infra"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.github_apply_environment)) && var.github_apply_environment != var.github_deploy_environment
    error_message = "github_apply_environment must be a plain environment name other than github_deploy_environment (otherwise the deploy job could assume the apply role)."
  }
}

variable "tf_state_bucket" {
  description = "S3 bucket of the remote state (backend.tf): the plan role may read it. Required with github_repository."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.tf_state_bucket))
    error_message = "With github_repository set, tf_state_bucket must name the state bucket (the plan role reads it)."
  }
}

variable "container_secrets" {
  description = "Environment variables the daemon gets from Secrets Manager or SSM Parameter Store, for $${NAME} in the targets CSV: a map of variable name to the secret's or parameter's ARN (a Secrets Manager ARN may end in :json-key:: to pick one key). ECS injects them at start; the execution role may read exactly these."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for name, arn in var.container_secrets :
      can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name)) &&
      can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:[0-9]{12}:(secret:|parameter/)", arn))
    ])
    error_message = "container_secrets maps an environment variable name (letters, digits, _) to a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}
