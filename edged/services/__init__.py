"""What the daemon does with the cards: identity, signing, consent (and later mail, DMP)."""
