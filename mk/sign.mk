# signed chain heads (issue 12): build lines for this piece
