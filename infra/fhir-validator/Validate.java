// HAPI FHIR's reference validator (R4) as a line-oriented process for the tests:
// each line read from stdin is one FHIR JSON resource; each line written to stdout is a JSON
// array of the issues found in it ({"severity", "location", "message"}), in input order.
// Offline: the bundled R4 definitions, HAPI's in-memory terminology, no terminology server.
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public class Validate {
  public static void main(String[] args) throws Exception {
    FhirContext context = FhirContext.forR4();
    ValidationSupportChain support = new ValidationSupportChain(
        new DefaultProfileValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new SnapshotGeneratingValidationSupport(context));
    FhirInstanceValidator instanceValidator = new FhirInstanceValidator(support);
    FhirValidator validator = context.newValidator();
    validator.registerValidatorModule(instanceValidator);

    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    out.println("[]"); // ready: the definitions are loaded
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      JsonArray issues = new JsonArray();
      try {
        ValidationResult result = validator.validateWithResult(line);
        for (SingleValidationMessage message : result.getMessages()) {
          JsonObject issue = new JsonObject();
          issue.addProperty("severity", message.getSeverity().getCode());
          issue.addProperty("location", message.getLocationString());
          issue.addProperty("message", message.getMessage());
          issues.add(issue);
        }
      } catch (RuntimeException e) {
        JsonObject issue = new JsonObject();
        issue.addProperty("severity", "fatal");
        issue.addProperty("location", "");
        issue.addProperty("message", String.valueOf(e.getMessage()));
        issues.add(issue);
      }
      out.println(issues);
    }
  }
}
