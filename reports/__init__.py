"""What reads the store for people: the text report, the HTML page and its figures, similar tracks."""
