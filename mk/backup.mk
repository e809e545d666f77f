# online backup and restore (issue 12): build lines for this piece
