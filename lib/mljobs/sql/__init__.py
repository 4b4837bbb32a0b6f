"""sql: run one SQL statement on the job tables and print the result as a table."""
