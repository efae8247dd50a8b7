"""The portal CA's cryptography (DESIGN.md "Issuers", 2): keys kept encrypted, CAs made or imported, CSRs signed,
CRLs built. Everything here works on `cryptography` objects and bytes; the services (certificates/services/
authorities.py, issuance.py, revocation.py) read and write the database around it.
"""
