"""Alert rules, lifecycle and notifiers (issue 4); nothing here yet."""
