"""Card readers: PC/SC readers and the bifente terminal, behind the apdu transport seam."""
