"""Working on nodes over SSH: sessions, phases run across nodes, files kept in sync."""
