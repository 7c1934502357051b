# Names and addresses only: no output carries a secret (the DSN, Redis URLs and AUTH string
# live in Secret Manager; read them there).
output "gateway_url" {
  description = "URL of the gateway service."
  value       = google_cloud_run_v2_service.gateway.uri
}

output "image_repository" {
  description = "Where to push the images: REPOSITORY/gateway:TAG and REPOSITORY/batch:TAG."
  value       = local.registry
}

output "archive_bucket" {
  description = "Cloud Storage bucket of the exposure archive (abgate report --archive on a copy)."
  value       = google_storage_bucket.archive.name
}

output "data_bucket" {
  description = "Cloud Storage bucket of features, reports and executed notebooks (mounted at /data in jobs)."
  value       = google_storage_bucket.data.name
}

output "events_table" {
  description = "BigQuery table of exposures and outcomes (abgate report --bigquery)."
  value       = local.events_table
}

output "api_tokens_secret" {
  description = "Secret Manager secret to add the API tokens to (comma-separated) before the first deploy."
  value       = google_secret_manager_secret.s["api-tokens"].secret_id
}

output "cloud_sql_instance" {
  description = "Cloud SQL connection name."
  value       = google_sql_database_instance.main.connection_name
}

output "service_accounts" {
  description = "Service accounts of the gateway, the jobs and the scheduler."
  value = {
    gateway   = google_service_account.gateway.email
    batch     = google_service_account.batch.email
    scheduler = google_service_account.scheduler.email
  }
}
