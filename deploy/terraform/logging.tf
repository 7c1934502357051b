# The exposure log: the gateway prints each exposure/outcome as a JSON line on stdout
# (ABGATE_LOG_SINK=stdout) labelled abgate_log=LOG_ID. Two Log Router sinks copy those entries:
# - to Cloud Storage, in hourly files LOGNAME/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json: the archive
#   layout that `abgate report --archive DIR` reads (copy the folder down with gcloud storage);
# - to BigQuery, table run_googleapis_com_stdout, which `abgate report --bigquery` reads.
locals {
  events_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name}-gateway\" AND labels.abgate_log=\"${var.log_id}\""
}

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62:This is the access-log bucket itself; logging its own access would recurse.
  name                        = "${var.project_id}-${var.name}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "archive" {
  name                        = "${var.project_id}-${var.name}-archive"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
  lifecycle_rule {
    condition {
      age = var.archive_retention_days
    }
    action {
      type = "Delete"
    }
  }
}

# Features for the batch job, daily reports and executed notebooks.
resource "google_storage_bucket" "data" {
  name                        = "${var.project_id}-${var.name}-data"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
}

resource "google_bigquery_dataset" "logs" {
  # checkov:skip=CKV_GCP_81:Google-managed encryption at rest; customer-managed keys are an organisation policy choice (add default_encryption_configuration with your Cloud KMS key).
  dataset_id  = replace("${var.name}_logs", "-", "_")
  location    = var.region
  description = "abgate exposures and outcomes, written by the Log Router"
}

resource "google_logging_project_sink" "archive" {
  # checkov:skip=CKV2_GCP_4:A locked retention policy can never be shortened: the archive must stay deletable (erasure requests on unit ids); retention is the bucket's lifecycle rule.
  name                   = "${var.name}-events-to-gcs"
  destination            = "storage.googleapis.com/${google_storage_bucket.archive.name}"
  filter                 = local.events_filter
  unique_writer_identity = true
}

resource "google_logging_project_sink" "bigquery" {
  name                   = "${var.name}-events-to-bq"
  destination            = "bigquery.googleapis.com/projects/${var.project_id}/datasets/${google_bigquery_dataset.logs.dataset_id}"
  filter                 = local.events_filter
  unique_writer_identity = true
  bigquery_options {
    use_partitioned_tables = true
  }
}

resource "google_storage_bucket_iam_member" "sink_writes_archive" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.archive.writer_identity
}

resource "google_bigquery_dataset_iam_member" "sink_writes_dataset" {
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_logging_project_sink.bigquery.writer_identity
}
