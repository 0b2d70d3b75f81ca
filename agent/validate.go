package agent

// AWS-shaped ValidationException messages.

func validationRequired(field string) *APIError {
	return apiErr(errValidation, "1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
}

func validationLength(field string, min, max int) *APIError {
	return apiErr(errValidation, "1 validation error detected: Value at '%s' failed to satisfy constraint: Member must have length between %d and %d", field, min, max)
}

func validationRange(field string, v int64, min, max int64) *APIError {
	if v < min {
		return apiErr(errValidation, "1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", v, field, min)
	}
	return apiErr(errValidation, "1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", v, field, max)
}

func validationEnum(field, v string, allowed string) *APIError {
	return apiErr(errValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", v, field, allowed)
}

func checkGrantTokens(tokens []string) error {
	if len(tokens) > 10 {
		return validationLength("grantTokens", 0, 10)
	}
	for _, t := range tokens {
		if len(t) < 1 || len(t) > 8192 {
			return validationLength("grantTokens", 1, 8192)
		}
	}
	return nil
}

func checkContext(ctx map[string]string) error {
	for k := range ctx {
		if k == "" {
			return apiErr(errValidation, "1 validation error detected: encryption context keys must not be empty")
		}
	}
	return nil
}
