"""What reads the store for people: the text report, the HTML page (its figures, its SQL view of the
store), similar tracks."""
