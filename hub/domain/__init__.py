"""Pure hub rules: billing, maintenance due dates and statistics, with no IO."""
