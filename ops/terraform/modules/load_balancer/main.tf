# The only way in: an Application Load Balancer. Internal by default (in the private subnets,
# no public address), where it may serve plain HTTP inside the VPC. Internet-facing only with
# HTTPS (TLS 1.2+, HTTP redirected there) and an authenticate action (OIDC or Cognito) in front
# of every path; the root module's validations refuse anything else. /metrics is never served
# through it (a fixed 404 at the ALB; Prometheus scrapes the tasks directly or the ADOT sidecar
# scrapes localhost). The tasks' security group admits traffic from this load balancer's
# security group only (rules in the service module).

locals {
  https       = var.domain_name != "" || var.certificate_arn != ""
  create_cert = var.domain_name != "" && var.certificate_arn == ""
  ports       = local.https ? [80, 443] : [80]
  auth        = var.authentication.type

  ingress = {
    for pair in setproduct(local.ports, var.ingress_cidrs) : "${pair[0]}-${pair[1]}" => {
      port = pair[0]
      cidr = pair[1]
    }
  }

  certificate_arn = local.create_cert ? aws_acm_certificate_validation.this[0].certificate_arn : var.certificate_arn

  # The listener that serves the daemon: HTTPS when there is a certificate, else plain HTTP
  # (internal only).
  serving_listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http[0].arn
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "upcheck load balancer: listeners open to the allowed CIDRs, out to the tasks only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = local.ingress

  security_group_id = aws_security_group.alb.id
  description       = "HTTP(S) to the listeners from ${each.value.cidr}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_20:The one port-80 listener that forwards instead of redirecting, aws_lb_listener.http, exists only without a certificate (count), allowed on an internal ALB only; with one, port 80 redirects to HTTPS.
  name                       = var.name
  internal                   = var.internal
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = var.access_logs_bucket
    prefix  = "alb"
    enabled = true
  }
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:The daemon serves plain HTTP only (SPEC.md UPCHECK_LISTEN); TLS ends at the ALB, and the tasks admit port 8080 from the ALB's security group only.
  name                 = var.name
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 15

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# Plain HTTP: only on an internal ALB without a certificate (the root module refuses a public
# ALB without HTTPS), so the traffic never leaves the VPC and the networks joined to it.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Exists only when no certificate is given (count), which the root module allows on an internal ALB only (alb_internal validation).
  #checkov:skip=CKV_AWS_103:Same listener, same condition: plain HTTP inside the VPC has no TLS policy.
  #checkov:skip=CKV2_AWS_20:Same listener, same condition: with a certificate http_redirect replaces it and redirects to HTTPS.
  count = local.https ? 0 : 1

  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_lb_listener" "http_redirect" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

# With authentication every request without a valid session is sent to the identity provider
# first; only then is it forwarded. That covers /, /results and the presigned links /results
# redirects to (a client reaches them only through an authenticated /results).
resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = local.certificate_arn

  dynamic "default_action" {
    for_each = local.auth == "oidc" ? [var.authentication.oidc] : []

    content {
      type  = "authenticate-oidc"
      order = 1

      authenticate_oidc {
        issuer                     = default_action.value.issuer
        authorization_endpoint     = default_action.value.authorization_endpoint
        token_endpoint             = default_action.value.token_endpoint
        user_info_endpoint         = default_action.value.user_info_endpoint
        client_id                  = default_action.value.client_id
        client_secret              = var.oidc_client_secret
        scope                      = default_action.value.scope
        session_timeout            = var.authentication.session_timeout
        on_unauthenticated_request = "authenticate"
      }
    }
  }

  dynamic "default_action" {
    for_each = local.auth == "cognito" ? [var.authentication.cognito] : []

    content {
      type  = "authenticate-cognito"
      order = 1

      authenticate_cognito {
        user_pool_arn              = default_action.value.user_pool_arn
        user_pool_client_id        = default_action.value.user_pool_client_id
        user_pool_domain           = default_action.value.user_pool_domain
        session_timeout            = var.authentication.session_timeout
        on_unauthenticated_request = "authenticate"
      }
    }
  }

  default_action {
    type             = "forward"
    order            = local.auth == "none" ? 1 : 2
    target_group_arn = aws_lb_target_group.this.arn
  }
}

# /metrics lists every URL with its state and errors and is for Prometheus, which scrapes the
# tasks directly (or the ADOT sidecar, over localhost): the ALB answers 404 for it before any
# forward or login, whatever the listener.
resource "aws_lb_listener_rule" "no_metrics" {
  listener_arn = local.serving_listener_arn
  priority     = 1

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Not found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Certificate and DNS (only with a domain)
# ---------------------------------------------------------------------------------------------
resource "aws_acm_certificate" "this" {
  count = local.create_cert ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = {
    for dvo in flatten(aws_acm_certificate.this[*].domain_validation_options) : dvo.domain_name => dvo
  }

  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count = local.create_cert ? 1 : 0

  certificate_arn         = aws_acm_certificate.this[0].arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}

resource "aws_route53_record" "alias" {
  count = var.domain_name != "" && var.route53_zone_id != "" ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

# ---------------------------------------------------------------------------------------------
# WAF
# ---------------------------------------------------------------------------------------------
resource "aws_wafv2_web_acl" "this" {
  count = var.enable_waf ? 1 : 0

  name  = var.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "aws-common"
    priority = 10

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-ip-reputation"
    priority = 30

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  # Anonymizers (Tor, VPN relays) are blocked; hosting-provider addresses are only counted, so
  # scripts polling /results from cloud machines keep working.
  rule {
    name     = "aws-anonymous-ip"
    priority = 35

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"

        rule_action_override {
          name = "HostingProviderIPList"

          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 40

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

# WAF requires the log group name to start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  count = var.enable_waf ? 1 : 0

  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]
}
