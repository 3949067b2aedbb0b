"""Operating the pipeline from Airflow: task glue and failure notification."""
