// Runs the Khronos glTF validator (npm package gltf-validator) on glTF or GLB files and prints its report as
// JSON on stdout, a list of one report per file: node validate_gltf.js FILE [FILE...]
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const files = process.argv.slice(2);
const validate = (file) =>
  validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { uri: path.basename(file), maxIssues: 100 });
Promise.all(files.map(validate))
  .then((reports) => process.stdout.write(JSON.stringify(reports)))
  .catch((error) => {
    process.stderr.write(String(error) + "\n");
    process.exit(2);
  });
