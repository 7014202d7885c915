"""Storage: the ClickHouse writer, versioned DDL migrations, alert forwarders."""
