"""The reference POS side: an OPS600MI client, a local store and the polling loop.

It speaks only the M3 API (LstCus and CnfCus over HTTP), so it runs against
posoutbox and, without the TRNR, CUNO and SHOP extension fields, against M3.
"""
