"""Wages: the wage table, the employer's sheet and its check, slips, payments, arrears."""
