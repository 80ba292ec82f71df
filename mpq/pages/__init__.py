"""The reader's side: running the notebooks as DVC stages, rendering the HTML pages and the entry page, and
the display and plotting helpers the notebooks share."""
