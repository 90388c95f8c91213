"""Terminology as data: UCUM (`ucum`), LOINC (`loinc`) and the code tables every service shares
(`vocab`). Pure: no I/O beyond reading the package's own data files."""
