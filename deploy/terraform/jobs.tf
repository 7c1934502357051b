# Batch work and daily reports as Cloud Run Jobs from the batch image, started by Cloud
# Scheduler (or by Composer: deploy/airflow). Features come from, and reports go to, the data
# bucket, mounted at /data.
locals {
  job_env = {
    ABGATE_POSTGRES_SCHEMA = "abgate"
    ABGATE_REDIS_PREFIX    = "abgate:"
    MLFLOW_TRACKING_URI    = var.mlflow_tracking_uri
  }
  job_secrets = { for k, env in local.secrets : env => google_secret_manager_secret.s[k].secret_id if env != "" && k != "api-tokens" }
  # The Log Router's BigQuery sink writes Cloud Run's stdout log to this table.
  events_table = "${var.project_id}.${google_bigquery_dataset.logs.dataset_id}.run_googleapis_com_stdout"
}

resource "google_cloud_run_v2_job" "batch" {
  name                = "${var.name}-batch"
  location            = var.region
  deletion_protection = false

  template {
    task_count = 1
    template {
      service_account = google_service_account.batch.email
      timeout         = "3600s"
      max_retries     = 1
      vpc_access {
        connector = google_vpc_access_connector.main.id
        egress    = "PRIVATE_RANGES_ONLY"
      }
      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [google_sql_database_instance.main.connection_name]
        }
      }
      volumes {
        name = "redis-ca"
        secret {
          secret = google_secret_manager_secret.s["redis-ca"].secret_id
          items {
            version = "latest"
            path    = "ca.pem"
          }
        }
      }
      volumes {
        name = "data"
        gcs {
          bucket = google_storage_bucket.data.name
        }
      }
      containers {
        image = "${local.registry}/batch:${var.image_tag}"
        args  = var.batch_args
        resources {
          limits = {
            cpu    = "2"
            memory = "4Gi"
          }
        }
        dynamic "env" {
          for_each = local.job_env
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = local.job_secrets
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
        volume_mounts {
          name       = "redis-ca"
          mount_path = "/secrets/redis-ca"
        }
        volume_mounts {
          name       = "data"
          mount_path = "/data"
        }
      }
    }
  }
}

# One report job per experiment: the HTML and JSON reports of the day, in the data bucket.
resource "google_cloud_run_v2_job" "report" {
  for_each            = toset(var.report_experiments)
  name                = "${var.name}-report-${each.key}"
  location            = var.region
  deletion_protection = false

  template {
    task_count = 1
    template {
      service_account = google_service_account.batch.email
      timeout         = "1800s"
      max_retries     = 1
      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [google_sql_database_instance.main.connection_name]
        }
      }
      volumes {
        name = "data"
        gcs {
          bucket = google_storage_bucket.data.name
        }
      }
      containers {
        image   = "${local.registry}/batch:${var.image_tag}"
        command = ["sh", "-c"]
        args = [join(" && ", [
          "mkdir -p /data/reports/${each.key}",
          "abgate report ${each.key} --bigquery ${local.events_table} --format json --out /data/reports/${each.key}/$(date -u +%F).json",
          "abgate report ${each.key} --bigquery ${local.events_table} --format html --out /data/reports/${each.key}/$(date -u +%F).html",
        ])]
        resources {
          limits = {
            cpu    = "1"
            memory = "2Gi"
          }
        }
        dynamic "env" {
          for_each = local.job_env
          content {
            name  = env.key
            value = env.value
          }
        }
        env {
          name = "ABGATE_POSTGRES_DSN" # the experiment store: the report reads the experiment's metrics
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.s["postgres-dsn"].secret_id
              version = "latest"
            }
          }
        }
        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
        volume_mounts {
          name       = "data"
          mount_path = "/data"
        }
      }
      vpc_access {
        connector = google_vpc_access_connector.main.id
        egress    = "PRIVATE_RANGES_ONLY"
      }
    }
  }
}

resource "google_cloud_scheduler_job" "batch" {
  count     = var.batch_schedule == "" ? 0 : 1
  name      = "${var.name}-batch"
  region    = var.region
  schedule  = var.batch_schedule
  time_zone = "Etc/UTC"
  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.batch.name}:run"
    oauth_token {
      service_account_email = google_service_account.scheduler.email
    }
  }
}

resource "google_cloud_scheduler_job" "report" {
  for_each  = google_cloud_run_v2_job.report
  name      = each.value.name
  region    = var.region
  schedule  = var.report_schedule
  time_zone = "Etc/UTC"
  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${each.value.name}:run"
    oauth_token {
      service_account_email = google_service_account.scheduler.email
    }
  }
}
