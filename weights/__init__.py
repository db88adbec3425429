"""Small artefacts localmatch makes and ships (installed as ``localmatch.shipped``)."""
